//! Command-line arguments: parsed and validated without side effects (no BPF, no tracefs);
//! the live run happens in `live`. Every value is bounded here, so that a typo is a usage error
//! (exit 2, one line) rather than a panic, a spinning loop or an unbounded map: durations at
//! most 30 days and, for intervals and thresholds, more than 0; counts at least 1; `--comm`
//! names checked and at most as many as the kernel map holds.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{builder::RangedU64ValueParser, Args, Parser, Subcommand};

use crate::output::parse_positive_duration;

/// Most `--comm` names (and `--pid`s): the size of the kernel maps WANTED_COMMS/WANTED_TGIDS.
pub const MAX_WANTED: usize = connlife_common::MAX_WANTED as usize;
/// Bytes of a comm the kernel keeps (TASK_COMM_LEN 16, with its NUL).
pub const COMM_LEN: usize = 15;

#[derive(Debug, Parser)]
#[command(
    name = "connlife",
    version,
    about = "Find the TCP connections a process is stuck with (CLOSE_WAIT never closed, ESTABLISHED never reused) and when it will run out of fds",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub trace: TraceArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Render the post-mortem of a session recorded with --record.
    /// Render a recording (`--record FILE`) or a post-mortem file the agent wrote
    /// (`--postmortem-dir`): findings on the way and the post-mortem.
    Report {
        file: PathBuf,
        #[arg(long)]
        json: bool,
        /// Also write the post-mortem as one self-contained HTML page (no network fetches).
        #[arg(long, value_name = "OUT.html")]
        html: Option<PathBuf>,
    },
    /// Run as a long-lived agent on this host: all processes, Prometheus /metrics, JSON findings.
    Agent(AgentArgs),
    /// Benchmark floor: attach one program that only counts sock/inet_sock_set_state; on
    /// Ctrl-C print {"type":"floor","count":N}.
    #[command(hide = true)]
    Floor {
        /// An empty program on every hook connlife attaches (the state one counting) instead.
        #[arg(long)]
        hooks: bool,
        /// With --hooks, leave out the syscall tracepoints: what the other hooks cost alone
        /// (any syscall tracepoint puts every syscall of the host on the kernel's slow path).
        #[arg(long, requires = "hooks")]
        no_syscalls: bool,
    },
    /// Show which tracepoints and kernel fields this kernel offers, and what connlife can do here.
    Check {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args, Clone)]
pub struct TraceArgs {
    /// Process to trace (repeatable). With neither --pid nor --comm, every process.
    #[arg(long = "pid", short = 'p')]
    pub pids: Vec<u32>,
    /// Process name to trace (repeatable). The kernel keeps 15 bytes of a name: a longer one
    /// matches on its first 15 bytes.
    #[arg(long = "comm", value_parser = parse_comm)]
    pub comms: Vec<String>,
    /// CLOSE_WAIT for longer than this is a finding.
    #[arg(long, default_value = "30s", value_parser = parse_positive_duration)]
    pub close_wait_after: Duration,
    /// ESTABLISHED, idle this long after at most one exchange, is a finding.
    #[arg(long, default_value = "60s", value_parser = parse_positive_duration)]
    pub idle_after: Duration,
    /// Print a summary this often.
    #[arg(long, default_value = "30s", value_parser = parse_positive_duration)]
    pub interval: Duration,
    /// How often to compare the model with the kernel's view (sock_diag and /proc) and count
    /// what it corrects, besides after lost events.
    #[arg(long, default_value = "30s", value_parser = parse_positive_duration)]
    pub reconcile_every: Duration,
    /// Smallest group (same pid, same remote) of unreused connections reported as a group.
    #[arg(long, default_value_t = 3, value_parser = parse_positive_count)]
    pub group_min: usize,
    /// One JSON object per line (see README for the fields).
    #[arg(long)]
    pub json: bool,
    /// The line stream even on a terminal (no live view).
    #[arg(long)]
    pub plain: bool,
    /// Also print every state change.
    #[arg(long)]
    pub transitions: bool,
    /// Do not capture where connections are opened (user stacks at connect/accept, Go
    /// net/http uprobes): saves their cost, findings then have no `origin`.
    #[arg(long)]
    pub no_origin: bool,
    /// Print each origin's whole stack, not only the user's first frames.
    #[arg(long, conflicts_with = "no_origin")]
    pub stacks: bool,
    /// Keep the input stream as JSON lines in FILE (flushed as it goes) for `connlife report
    /// FILE`. Past --record-max-size FILE is rotated to FILE.1, FILE.2...; FILE is always the
    /// newest part and starts with the session's start. A write error (disk full) stops the
    /// recording, not the tracing.
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Largest size of the record file before it is rotated (K, M, G: powers of 1024).
    #[arg(long, default_value = "100M", value_parser = parse_record_size, requires = "record")]
    pub record_max_size: u64,
    /// Rotated record files kept besides FILE (the oldest is removed).
    #[arg(long, default_value_t = 2, value_parser = RangedU64ValueParser::<usize>::new().range(0..=100), requires = "record")]
    pub record_keep: usize,
    /// Stop after this long (default: until Ctrl-C or until the traced processes exit).
    #[arg(long, value_parser = parse_positive_duration)]
    pub duration: Option<Duration>,
    /// Most live connections kept in memory (at most 2097152); past it the least recently
    /// active is dropped (counted).
    #[arg(long, default_value_t = 200_000, value_parser = parse_max_conns)]
    pub max_conns: usize,
}

/// `connlife agent`: the long-lived, host-wide mode (see docs/agent.md).
#[derive(Debug, Args, Clone)]
pub struct AgentArgs {
    /// Address of the /metrics and /healthz endpoint.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub listen: SocketAddr,
    /// Process name to trace (repeatable); default every process.
    #[arg(long = "comm", value_parser = parse_comm)]
    pub comms: Vec<String>,
    /// CLOSE_WAIT for longer than this is a finding.
    #[arg(long, default_value = "60s", value_parser = parse_positive_duration)]
    pub close_wait_after: Duration,
    /// ESTABLISHED, idle this long after at most one exchange, is a finding.
    #[arg(long, default_value = "5m", value_parser = parse_positive_duration)]
    pub idle_after: Duration,
    /// How often to read fds from /proc, refresh metrics and log a summary.
    #[arg(long, default_value = "15s", value_parser = parse_positive_duration)]
    pub interval: Duration,
    /// How often to reconcile the model with the kernel's view (sock_diag and /proc), besides
    /// after lost events.
    #[arg(long, default_value = "5m", value_parser = parse_positive_duration)]
    pub reconcile_every: Duration,
    /// Label values (process names, remote endpoints) per metric before the rest become "other".
    #[arg(long, default_value_t = 20, value_parser = parse_positive_count)]
    pub top_n: usize,
    /// Most connections in the model (at most 2097152); past it the least recently active is
    /// dropped (counted).
    #[arg(long, default_value_t = 200_000, value_parser = parse_max_conns)]
    pub max_conns: usize,
    /// Most processes whose fds are read each interval (those with the most connections).
    #[arg(long, default_value_t = 500, value_parser = parse_positive_count)]
    pub max_processes: usize,
    /// Write each post-mortem as a file here too (`connlife report FILE` renders it).
    #[arg(long)]
    pub postmortem_dir: Option<PathBuf>,
    /// Do not capture where connections are opened (user stacks at connect/accept, Go
    /// net/http uprobes).
    #[arg(long)]
    pub no_origin: bool,
    /// A process killed by a signal, or exiting, while holding at least this many (stuck or
    /// unreused) connections gets a post-mortem; one that hit EMFILE/ENFILE always does.
    #[arg(long, default_value_t = 20, value_parser = parse_positive_count)]
    pub postmortem_min_conns: usize,
    /// Post-mortem files kept in --postmortem-dir (the oldest are removed first).
    #[arg(long, default_value_t = 100, value_parser = parse_positive_count)]
    pub postmortem_keep: usize,
    /// Most bytes of post-mortem files in --postmortem-dir (the oldest are removed first).
    #[arg(long, default_value = "100M", value_parser = parse_record_size)]
    pub postmortem_max_size: u64,
}

/// A count that must be at least 1 (`--max-conns 0` used to mean "unlimited" in silence).
pub fn parse_positive_count(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("invalid count {:?}: a whole number, at least 1", s.trim())),
    }
}

/// `--max-conns`: at least 1, at most what the model can hold.
pub fn parse_max_conns(s: &str) -> Result<usize, String> {
    let n = parse_positive_count(s)?;
    let most = crate::model::conns::MAX_CONNS;
    if n > most {
        return Err(format!("at most {most} connections"));
    }
    Ok(n)
}

/// A `--comm` name: not empty, no NUL (the kernel's terminator) and no `/` (a path, not a
/// process name). Longer than 15 bytes is accepted: it matches on its first 15 bytes, as the
/// kernel keeps no more.
pub fn parse_comm(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("a process name cannot be empty".into());
    }
    if s.contains('\0') {
        return Err("a process name cannot contain NUL".into());
    }
    if s.contains('/') {
        let base = s.rsplit('/').next().unwrap_or(s);
        return Err(format!(
            "{s:?} is a path: --comm takes a process name as in /proc/PID/comm (e.g. {base:?})"
        ));
    }
    Ok(s.to_string())
}

/// `--record-max-size`: bytes, or K/M/G (powers of 1024), from 1M to 1T.
pub fn parse_record_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {t:?} (examples: 100M, 1G)"))?;
    let mult: u64 = match unit.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(format!("invalid size unit in {t:?} (use K, M, G or T)")),
    };
    match n.checked_mul(mult) {
        Some(b) if (1 << 20..=1 << 40).contains(&b) => Ok(b),
        _ => Err(format!("invalid size {t:?}: from 1M to 1T")),
    }
}

/// Checks clap cannot make: how many `--pid`/`--comm` there are (the kernel maps' size), and
/// that each pid is a live user process. One clear line otherwise.
pub fn validate(args: &TraceArgs) -> Result<(), String> {
    if args.comms.len() > MAX_WANTED {
        return Err(format!(
            "{} --comm names: at most {MAX_WANTED} (the kernel map's size)",
            args.comms.len()
        ));
    }
    if args.pids.len() > MAX_WANTED {
        return Err(format!(
            "{} --pid: at most {MAX_WANTED} (the kernel map's size)",
            args.pids.len()
        ));
    }
    validate_pids(&args.pids)
}

/// Check that each pid names a live user process; one clear line otherwise.
pub fn validate_pids(pids: &[u32]) -> Result<(), String> {
    for &pid in pids {
        let stat =
            std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|_| format!("no such process: {pid}"))?;
        if is_kernel_thread(&stat) {
            return Err(format!(
                "pid {pid} is a kernel thread: it has no sockets of its own to trace"
            ));
        }
        if let Some(state @ ('Z' | 'X')) = process_state(&stat) {
            // A leader that called pthread_exit is a zombie while its other threads run on:
            // that process is alive. /proc/PID/task lists the threads still there.
            let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
            if tasks <= 1 {
                let what = if state == 'Z' { "zombie" } else { "dead" };
                return Err(format!("pid {pid} has already exited ({what}): nothing to trace"));
            }
        }
        let tgid = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|status| status_tgid(&status));
        if let Some(tgid) = tgid.filter(|&t| t != pid) {
            return Err(format!("pid {pid} is a thread of process {tgid}: use --pid {tgid}"));
        }
    }
    Ok(())
}

/// /proc/PID/stat field 3: R, S, D, Z (zombie), X (dead)...
pub fn process_state(stat: &str) -> Option<char> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().next()?.chars().next()
}

/// `Tgid:` of /proc/PID/status.
fn status_tgid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// /proc/PID/stat field 9 (flags) has PF_KTHREAD (0x00200000) for kernel threads.
pub fn is_kernel_thread(stat: &str) -> bool {
    let Some(after_comm) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return false;
    };
    after_comm
        .split_whitespace()
        .nth(6)
        .and_then(|f| f.parse::<u64>().ok())
        .is_some_and(|flags| flags & 0x0020_0000 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_thread_flag() {
        let kthread = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 2 0 0";
        let user = "1234 (my (odd) app) S 1 1234 1234 0 -1 4194560 100 0 0 0";
        assert!(is_kernel_thread(kthread));
        assert!(!is_kernel_thread(user));
    }

    #[test]
    fn bad_duration_is_a_usage_error() {
        let err = Cli::try_parse_from(["connlife", "--pid", "1", "--idle-after", "soon"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("invalid duration"));
    }

    #[test]
    fn validates_missing_pid() {
        assert_eq!(
            validate_pids(&[u32::MAX - 1]).unwrap_err(),
            format!("no such process: {}", u32::MAX - 1)
        );
        assert!(validate_pids(&[std::process::id()]).is_ok());
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("connlife").chain(args.iter().copied()))
    }

    fn usage_error(args: &[&str]) -> String {
        let err = parse(args).expect_err("a usage error");
        assert_eq!(err.exit_code(), 2, "{err}");
        err.to_string()
    }

    #[test]
    fn overflowing_duration_is_a_usage_error_not_a_panic() {
        let err = usage_error(&["--idle-after", "99999999999999999999h"]);
        assert!(err.contains("at most 30 days"), "{err}");
        for flag in ["--close-wait-after", "--interval", "--duration"] {
            usage_error(&[flag, "31d"]);
        }
        let cli = parse(&["--duration", "30d", "--idle-after", "720h"]).expect("30 days is fine");
        assert_eq!(cli.trace.duration, Some(crate::output::MAX_DURATION));
    }

    #[test]
    fn zero_intervals_and_thresholds_are_refused() {
        for (flag, value) in [
            ("--interval", "0s"),
            ("--close-wait-after", "0s"),
            ("--idle-after", "0"),
            ("--duration", "0s"),
            ("--duration", "0ms"),
        ] {
            let err = usage_error(&[flag, value]);
            assert!(err.contains("must be more than 0"), "{flag} {value}: {err}");
        }
    }

    #[test]
    fn zero_counts_are_refused() {
        assert!(usage_error(&["--max-conns", "0"]).contains("must be at least 1"));
        assert!(usage_error(&["--max-conns=-1"]).contains("invalid count"));
        assert!(usage_error(&["--max-conns", "99999999999999999999999"]).contains("invalid count"));
        assert!(usage_error(&["--max-conns", "2097153"]).contains("at most 2097152 connections"));
        assert!(parse(&["--max-conns", "2097152"]).is_ok());
        assert!(usage_error(&["--group-min", "0"]).contains("must be at least 1"));
        let cli = parse(&["--max-conns", "1", "--group-min", "1"]).expect("1 is fine");
        assert_eq!((cli.trace.max_conns, cli.trace.group_min), (1, 1));
        let cli = parse(&[]).expect("defaults");
        assert_eq!((cli.trace.max_conns, cli.trace.group_min), (200_000, 3));
    }

    #[test]
    fn comm_names_are_checked() {
        assert!(usage_error(&["--comm", ""]).contains("cannot be empty"));
        assert!(usage_error(&["--comm", "a\0b"]).contains("NUL"));
        assert!(usage_error(&["--comm", "/usr/sbin/nginx"]).contains("(e.g. \"nginx\")"));
        // Longer than the kernel's 15 bytes: accepted as typed (matched on 15 bytes later).
        let cli = parse(&["--comm", "a-very-long-process-name", "--comm", "nginx"]).expect("fine");
        assert_eq!(cli.trace.comms, ["a-very-long-process-name", "nginx"]);
    }

    #[test]
    fn at_most_as_many_comms_as_the_kernel_map_holds() {
        let mut args = parse(&[]).expect("defaults").trace;
        args.comms = (0..MAX_WANTED).map(|i| format!("p{i}")).collect();
        assert_eq!(validate(&args), Ok(()));
        args.comms.push("one-more".into());
        assert_eq!(
            validate(&args).unwrap_err(),
            "4097 --comm names: at most 4096 (the kernel map's size)"
        );
    }

    #[test]
    fn record_size_and_keep() {
        assert_eq!(parse_record_size("100M"), Ok(100 << 20));
        assert_eq!(parse_record_size("1g"), Ok(1 << 30));
        assert_eq!(
            parse_record_size("512KiB"),
            Err("invalid size \"512KiB\": from 1M to 1T".into())
        );
        assert_eq!(parse_record_size("1048576"), Ok(1 << 20));
        for bad in ["0", "2T", "99999999999999999999G", "x", "5X", "-1M"] {
            assert!(parse_record_size(bad).is_err(), "{bad}");
        }
        let cli = parse(&["--record", "/tmp/r", "--record-max-size", "1G", "--record-keep", "0"]).expect("fine");
        assert_eq!((cli.trace.record_max_size, cli.trace.record_keep), (1 << 30, 0));
        let cli = parse(&["--record", "/tmp/r"]).expect("defaults");
        assert_eq!((cli.trace.record_max_size, cli.trace.record_keep), (100 << 20, 2));
        usage_error(&["--record-keep", "1"]); // needs --record
        usage_error(&["--record", "/tmp/r", "--record-keep", "101"]);
    }

    #[test]
    fn process_state_reads_field_3() {
        assert_eq!(process_state("1234 (my (odd) app) Z 1 1234 1234 0 -1"), Some('Z'));
        assert_eq!(process_state("1 (init) S 0 1"), Some('S'));
        assert_eq!(process_state("garbage"), None);
        assert_eq!(status_tgid("Name:\tx\nTgid:\t77\nPid:\t78\n"), Some(77));
    }

    #[test]
    fn zombie_pid_is_refused() {
        let child = std::process::Command::new("sleep")
            .arg("0")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        // Not waited for: it stays a zombie until this test ends.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| process_state(&s))
            != Some('Z')
        {
            assert!(std::time::Instant::now() < deadline, "sleep 0 did not exit");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(
            validate_pids(&[pid]).unwrap_err(),
            format!("pid {pid} has already exited (zombie): nothing to trace")
        );
        let mut child = child;
        let _ = child.wait();
    }

    #[test]
    fn thread_id_is_refused_with_its_process() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let _ = tx.send(unsafe { libc::gettid() } as u32);
            let _ = done_rx.recv(); // alive until checked
        });
        let tid = rx.recv().expect("thread id");
        let pid = std::process::id();
        let result = validate_pids(&[tid]);
        let _ = done_tx.send(());
        let _ = thread.join();
        assert_eq!(
            result.unwrap_err(),
            format!("pid {tid} is a thread of process {pid}: use --pid {pid}")
        );
    }
}
