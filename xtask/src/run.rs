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
use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use std::{fs, thread};

use crate::util::{self, Proc};

/// Arguments the demo passes to connlife before the user's extra ones.
const DEMO_ARGS: &[&str] = &["--idle-after", "5s", "--close-wait-after", "5s", "--interval", "10s"];
const DEMO_DURATION: Duration = Duration::from_secs(40);
/// How long connlife gets to print its final report after SIGINT.
const REPORT_GRACE: Duration = Duration::from_secs(15);

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

pub fn run(root: &Path, pid: Option<u32>, duration: Option<Duration>, extra: Vec<String>) -> Result<()> {
    ensure!(
        util::is_root(),
        "connlife loads eBPF programs and needs root (try: sudo -E cargo xtask run)"
    );
    crate::setup::setup(true).context("setup")?;
    let started = Instant::now();
    println!("building connlife (release) ...");
    duct::cmd!("cargo", "build", "--release", "-p", "connlife")
        .dir(root)
        .run()?;
    println!("built in {}", util::secs(started));
    let release = root.join("target/release");
    let connlife = release.join("connlife");
    ensure!(connlife.is_file(), "{} was not built", connlife.display());

    // A handler (not SIG_IGN, which children would inherit) so Ctrl-C only sets a flag here.
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t) };
    let (mut workload, mut args) = (None, Vec::new());
    let (pid, duration) = match pid {
        Some(pid) => (pid, duration),
        None => {
            let (child, pid) = start_workload(root, &release.join("connlife-workload"))?;
            workload = Some(child);
            args = DEMO_ARGS.iter().map(|s| s.to_string()).collect();
            (pid, Some(duration.unwrap_or(DEMO_DURATION)))
        }
    };
    args.extend(extra);
    let result = watch(&connlife, pid, &args, duration);
    if let Some(mut w) = workload {
        w.stop(libc::SIGTERM, Duration::from_secs(3))?;
        println!("workload stopped");
    }
    result
}

/// Starts `connlife-workload demo` in its own process group; returns it with the client pid.
/// The process group is killed when the returned handle drops.
fn start_workload(root: &Path, bin: &Path) -> Result<(Group, u32)> {
    ensure!(
        bin.is_file(),
        "{} does not exist: the built-in demo workload is not part of this build yet; \
         watch one of your own processes with `cargo xtask run --pid PID`",
        bin.display()
    );
    let log_path = root.join("target/connlife-workload.log");
    fs::create_dir_all(root.join("target"))?;
    let mut log = fs::File::create(&log_path).context("creating the workload log")?;
    let mut cmd = Command::new(bin);
    cmd.arg("demo")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log.try_clone()?);
    let mut child = Group(Proc::spawn(cmd.process_group(0))?);
    let lines = child.0.lines()?;
    // The first line to us, the rest to the log (so the pipe never fills up).
    let first = lines.recv_timeout(Duration::from_secs(15));
    thread::spawn(move || lines.iter().for_each(|l| _ = writeln!(log, "{l}")));
    let Some(pid) = first.as_deref().ok().and_then(parse_pid_line) else {
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

/// A child in its own process group: the whole group is killed when it drops.
struct Group(Proc);

impl Group {
    /// Sends `sig` to the group, then SIGKILL to it after `grace`.
    fn stop(&mut self, sig: libc::c_int, grace: Duration) -> Result<()> {
        if self.0.stop(sig, true, grace)?.is_none() {
            self.0.stop(libc::SIGKILL, true, grace)?;
        }
        Ok(())
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Ok(None) = self.0 .0.try_wait() {
            util::signal(-(self.0 .0.id() as i32), libc::SIGKILL);
        }
    }
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
    let until = match duration {
        Some(d) => format!("for {} s", d.as_secs()),
        None => "until Ctrl-C".to_string(),
    };
    println!("running {} {until}", util::shown(&cmd));
    let mut child = Proc::spawn(cmd.stdin(Stdio::null()).process_group(0))?;
    let deadline = duration.map(|d| Instant::now() + d);
    let (status, signalled) = loop {
        if let Some(status) = child.0.try_wait()? {
            break (status, false);
        }
        if INTERRUPTED.load(Ordering::SeqCst) || deadline.is_some_and(|d| Instant::now() >= d) {
            if let Some(status) = child.stop(libc::SIGINT, false, REPORT_GRACE)? {
                break (status, true);
            }
            let grace = REPORT_GRACE.as_secs();
            eprintln!("connlife did not exit {grace} s after SIGINT: killing it");
            child.0.kill()?;
            break (child.0.wait()?, true);
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

/// `40s`, `2m`, `1500ms`, `90` (seconds): humantime's units, seconds by default.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let with_unit = if s.bytes().all(|b| b.is_ascii_digit()) {
        format!("{s}s")
    } else {
        s.to_string()
    };
    humantime::parse_duration(&with_unit).with_context(|| format!("bad duration `{s}`: use 40s, 2m or 1500ms"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

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
        assert_eq!(parse_duration("2min").unwrap(), Duration::from_secs(120));
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
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let workload = script(dir, "workload", "echo \"pid $$\"\necho more\nexec sleep 30\n");
        let marker = dir.join("report");
        let connlife = script(
            dir,
            "connlife",
            &format!(
                "trap 'echo \"$*\" > {}; exit 0' INT\nwhile :; do sleep 0.1; done\n",
                marker.display()
            ),
        );
        let (mut child, pid) = start_workload(dir, &workload).unwrap();
        assert_eq!(pid, child.0 .0.id());
        let started = Instant::now();
        let args = vec!["--interval".to_string(), "10s".to_string()];
        watch(&connlife, pid, &args, Some(Duration::from_millis(500))).unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        let seen = fs::read_to_string(&marker).unwrap();
        assert_eq!(seen.trim(), format!("--pid {pid} --interval 10s"));
        child.stop(libc::SIGTERM, Duration::from_secs(3)).unwrap();
        assert!(child.0 .0.try_wait().unwrap().is_some());
    }

    #[test]
    fn workload_problems_are_explained() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let missing = start_workload(dir, &dir.join("nope")).err().unwrap();
        assert!(missing.to_string().contains("--pid PID"), "{missing}");
        let chatty = script(dir, "chatty", "echo hello\nexec sleep 30\n");
        let err = start_workload(dir, &chatty).err().unwrap();
        assert!(err.to_string().contains("pid <N>"), "{err}");
    }

    #[test]
    fn judges_exit_status() {
        assert!(judge(ExitStatus::from_raw(0), false).is_ok());
        assert!(judge(ExitStatus::from_raw(libc::SIGINT), true).is_ok());
        assert!(judge(ExitStatus::from_raw(libc::SIGINT), false).is_err());
        assert!(judge(ExitStatus::from_raw(1 << 8), true).is_err());
    }
}
