//! Command-line arguments: parsed and validated without side effects (no BPF, no tracefs);
//! the live run happens in `live`.
use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::output::parse_duration;

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
    Report {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Run as a long-lived agent on this host: all processes, Prometheus /metrics, JSON findings.
    Agent(crate::run::agent::AgentArgs),
    /// Benchmark floor: attach one program that only counts sock/inet_sock_set_state; on
    /// Ctrl-C print {"type":"floor","count":N}.
    #[command(hide = true)]
    Floor,
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
    /// Process name to trace (repeatable; the kernel's 15-character comm).
    #[arg(long = "comm")]
    pub comms: Vec<String>,
    /// CLOSE_WAIT for longer than this is a finding.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub close_wait_after: Duration,
    /// ESTABLISHED, idle this long after at most one exchange, is a finding.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub idle_after: Duration,
    /// Print a summary this often.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Smallest group (same pid, same remote) of unreused connections reported as a group.
    #[arg(long, default_value_t = 3)]
    pub group_min: usize,
    /// One JSON object per line (see README for the fields).
    #[arg(long)]
    pub json: bool,
    /// Also print every state change.
    #[arg(long)]
    pub transitions: bool,
    /// Keep the input stream as JSON lines in FILE (flushed as it goes) for `connlife report`.
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Stop after this long (default: until Ctrl-C or until the traced processes exit).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Most live connections kept in memory; past it the least recently active is dropped (counted).
    #[arg(long, default_value_t = 200_000)]
    pub max_conns: usize,
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
    }
    Ok(())
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
}
