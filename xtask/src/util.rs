//! What the commands share: running a program quietly with a one-line failure, the children
//! that die with their handle, root, timing and the one-line step messages.

use anyhow::{bail, ensure, Context, Result};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};
use std::{fs, thread};
use wait_timeout::ChildExt;

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `12 s` since `started`.
pub fn secs(started: Instant) -> String {
    format!("{:.0} s", started.elapsed().as_secs_f64())
}

/// Prints the start of a step's line; the step finishes it with `println!`.
pub fn begin(text: &str) -> Result<()> {
    print!("{text}");
    Ok(std::io::stdout().flush()?)
}

/// Runs `cmd` with its stdout and stderr in `log`; on failure the error names the command, its
/// status, the last line it printed and the log.
pub fn quiet(cmd: duct::Expression, log: &Path) -> Result<()> {
    fs::create_dir_all(log.parent().context("log path")?)?;
    let status = cmd.stdin_null().stderr_to_stdout().stdout_path(log).run();
    if let Err(e) = status {
        let last = tail(log, 1);
        bail!("{e}: {last}; log: {}", log.display());
    }
    Ok(())
}

/// The last `n` lines of a file that are not blank, for an error message.
pub fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().map(str::trim_end).filter(|l| !l.is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `program arg arg`, as a user would type it.
pub fn shown(cmd: &Command) -> String {
    let words = std::iter::once(cmd.get_program()).chain(cmd.get_args());
    words.map(|w| w.to_string_lossy()).collect::<Vec<_>>().join(" ")
}

/// kill(2): a pid, or a process group when negative.
pub fn signal(pid: i32, sig: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) };
}

/// A child process that is killed and reaped when dropped, whatever happened before.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    pub fn spawn(cmd: &mut Command) -> Result<Proc> {
        let what = cmd.get_program().to_string_lossy().into_owned();
        Ok(Proc(cmd.spawn().with_context(|| format!("starting {what}"))?))
    }

    /// Sends `sig` to the process (`group`: to its process group) and waits up to `grace`.
    pub fn stop(&mut self, sig: libc::c_int, group: bool, grace: Duration) -> Result<Option<ExitStatus>> {
        let pid = self.0.id() as i32;
        signal(if group { -pid } else { pid }, sig);
        Ok(self.0.wait_timeout(grace)?)
    }

    /// Polls `ready` until it holds, failing if the process exits or `secs` pass.
    pub fn wait_for(&mut self, what: &str, secs: u64, mut ready: impl FnMut() -> bool) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !ready() {
            if let Some(status) = self.0.try_wait()? {
                bail!("exited ({status}) before {what}");
            }
            ensure!(Instant::now() < deadline, "no {what} after {secs} s");
            thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Its stdout's lines, read on a thread so that waiting for one can time out.
    pub fn lines(&mut self) -> Result<Receiver<String>> {
        let out = self.0.stdout.take().context("no stdout pipe")?;
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let lines = BufReader::new(out).lines().map_while(|l| l.ok());
            lines.for_each(|l| _ = tx.send(l));
        });
        Ok(rx)
    }
}

/// The rest of the first line starting with `prefix`.
pub fn next_line(rx: &Receiver<String>, prefix: &str, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left);
        let line = line.with_context(|| format!("waiting for a `{prefix}` line"))?;
        if let Some(rest) = line.strip_prefix(prefix) {
            return Ok(rest.trim().to_string());
        }
    }
}
