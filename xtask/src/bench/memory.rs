//! `cargo xtask bench --memory`: the agent's resident memory per tracked socket, and its start-up
//! on a host that already holds them.
//!
//! K tracked sockets are K/2 idle loopback connections with both ends held by processes the
//! agent traces (it traces every process): `connlife-workload hold` processes connect, each to
//! its own `bench --child sink` (accepts and keeps). One process can hold at most RLIMIT_NOFILE's
//! hard limit of fds (20,000 on the CI machine: raising it needs CAP_SYS_RESOURCE), so the
//! connections are split over holder/sink pairs, and each pair has a server port of its own so
//! that no destination needs more ephemeral ports than net.ipv4.ip_local_port_range offers.
//!
//! For each K, two agents in turn: the first starts on the quiet host (RSS before), sees the
//! sockets opened (events) and is read once its summary counts them (RSS after, bytes per
//! tracked socket); the second starts on the held sockets (time to its first summary, which
//! follows the start-up snapshot; VmHWM then, the peak; VmRSS 3 s later, the steady state).

use anyhow::{Context, Result};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};
use std::{fs, thread};

use super::{interrupt, json_u64, piped, raise_nofile, SUMMARY};
use crate::util::{next_line, shown, Proc};

/// Issue 14's goal for the agent's memory.
const GOAL_BYTES_PER_SOCKET: f64 = 300.0;

pub fn memory(release: &Path, dir: &Path, sockets: &[usize]) -> Result<()> {
    let (connlife, xtask) = (release.join("connlife"), release.join("xtask"));
    let workload = release.join("connlife-workload");
    let ports = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")?;
    let range: Vec<usize> = ports.split_whitespace().filter_map(|p| p.parse().ok()).collect();
    let ephemeral = range.get(1).zip(range.first()).map_or(28_000, |(hi, lo)| hi - lo + 1);
    let nofile = raise_nofile() as usize;
    let sysctl = |name: &str| fs::read_to_string(format!("/proc/sys/fs/{name}")).unwrap_or_default();
    let mem = fs::read_to_string("/proc/meminfo")?;
    let avail = mem.lines().find(|l| l.starts_with("MemAvailable:")).unwrap_or_default();
    println!(
        "limits: RLIMIT_NOFILE hard {nofile}, ephemeral ports {} ({ephemeral}), fs.nr_open {}, fs.file-max {}, {}",
        ports.trim().replace('\t', "-"),
        sysctl("nr_open").trim(),
        sysctl("file-max").trim(),
        avail.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    // Connections per holder/sink pair: one fd each per process, one port each per destination.
    let chunk = nofile.min(ephemeral).saturating_sub(1000).clamp(1000, 25_000);
    let agent = |cmd: &mut Command| {
        cmd.args(["agent", "--listen", "127.0.0.1:0", "--interval", "1s"]);
    };
    let mut shown_agent = Command::new(&connlife);
    agent(&mut shown_agent);
    println!(
        "agent:   {}  (the agent's defaults but for --interval)",
        shown(&shown_agent)
    );
    println!(
        "holders: {} hold <sink addr> <count>  (<= {chunk} each, RLIMIT_NOFILE soft raised to hard)",
        workload.display()
    );
    println!(
        "sinks:   {} bench --child sink  (one per holder, own port: accepts and keeps)",
        xtask.display()
    );
    println!("tracked: ESTABLISHED in the agent's summary (both ends of each connection, and the host's own)");
    println!(
        "\n sockets   conns procs | events: tracked  RSS before   RSS after B/socket <= 300 B | snapshot: tracked 1st summary  VmHWM peak VmRSS steady B/socket <= 300 B"
    );
    let (out_path, err_path) = (dir.join("memory.out"), dir.join("memory.err"));
    let start_agent = || -> Result<(Proc, Instant)> {
        let mut cmd = Command::new(&connlife);
        agent(&mut cmd);
        cmd.stdout(fs::File::create(&out_path)?)
            .stderr(fs::File::create(&err_path)?);
        Ok((Proc::spawn(&mut cmd)?, Instant::now()))
    };
    // The last summary line the agent wrote, once `ready` holds for it.
    let summary_when = |p: &mut Proc, secs, ready: &mut dyn FnMut(&str) -> bool| -> Result<String> {
        let mut summary = String::new();
        p.wait_for("its summary", secs, || {
            let text = fs::read_to_string(&out_path).unwrap_or_default();
            summary = text
                .lines()
                .rev()
                .find(|l| l.starts_with(SUMMARY))
                .unwrap_or_default()
                .into();
            let done = !summary.is_empty() && ready(&summary);
            if !done {
                thread::sleep(Duration::from_millis(20));
            }
            done
        })
        .with_context(|| format!("connlife agent: see {}", err_path.display()))?;
        Ok(summary)
    };
    let established = |summary: &str| json_u64(summary, "/by_state/ESTABLISHED").unwrap_or(0);
    let mut evicted = 0;
    let mut rings = Vec::new();
    for &k in sockets {
        let conns = k / 2;
        // Started on the quiet host: RSS before, then the sockets it sees opened.
        let (mut live, _) = start_agent()?;
        let before_summary = summary_when(&mut live, 600, &mut |_| true)?;
        thread::sleep(Duration::from_secs(2));
        let (before, quiet) = (status_bytes(live.0.id(), "VmRSS:"), established(&before_summary));
        let ring_before = map_rss(live.0.id(), "anon_inode:bpf-map");
        let pairs = hold(&xtask, &workload, conns, chunk)?;
        let tracked = |s: &str| established(s).saturating_sub(quiet);
        // Every socket counted, or 20 s without a change (evicted at --max-conns, say).
        let (mut last, mut since) = (u64::MAX, Instant::now());
        let summary = summary_when(&mut live, 900, &mut |s| {
            let n = tracked(s);
            if n != last {
                (last, since) = (n, Instant::now());
            }
            n as usize >= k || since.elapsed() > Duration::from_secs(20)
        })?;
        // Settled: the symbolizer lets go of the binaries it parsed after 10 s without a request.
        thread::sleep(Duration::from_secs(12));
        let after = status_bytes(live.0.id(), "VmRSS:");
        let ring = map_rss(live.0.id(), "anon_inode:bpf-map");
        let n = tracked(&summary);
        evicted = evicted.max(json_u64(&summary, "/evicted").unwrap_or(0));
        interrupt(&mut live).context("stopping the agent")?;
        // Started on the held sockets: the snapshot.
        let (mut p, started) = start_agent()?;
        let first = summary_when(&mut p, 600, &mut |_| true)?;
        let to_summary = started.elapsed().as_secs_f64();
        let peak = status_bytes(p.0.id(), "VmHWM:");
        thread::sleep(Duration::from_secs(3));
        let steady = status_bytes(p.0.id(), "VmRSS:");
        evicted = evicted.max(json_u64(&first, "/evicted").unwrap_or(0));
        interrupt(&mut p).context("stopping the agent")?;
        let at_start = established(&first).saturating_sub(quiet);
        let per = |rss: u64, n: u64| {
            let per = (rss as f64 - before as f64) / n.max(1) as f64;
            let met = if per <= GOAL_BYTES_PER_SOCKET { "met" } else { "NOT MET" };
            format!("{per:>8.0} {met:<8}")
        };
        let line = format!(
            "{k:>8} {conns:>7} {:>5} | {n:>15} {:>11} {:>11} {} | {at_start:>16} {to_summary:>9.2} s {:>11} {:>12} {}",
            2 * pairs.len(),
            mib(before),
            mib(after),
            per(after, n),
            mib(peak),
            mib(steady),
            per(steady, at_start),
        );
        println!("{}", line.trim_end());
        rings.push((k, ring_before, ring));
        drop(pairs); // holders and sinks killed (then reaped)
        thread::sleep(Duration::from_millis(500));
    }
    println!("(procs: holders and sinks, each holding one end of its connections; tracked: ESTABLISHED sockets the");
    println!(
        " agent's summary counts beyond the quiet host's. events: an agent started before the sockets were opened,"
    );
    println!(
        " B/socket = (RSS after - RSS before) / tracked. snapshot: an agent started on the held sockets, 1st summary"
    );
    println!(" = its start to its first summary (which follows the snapshot), B/socket = (VmRSS steady - RSS before) / tracked)");
    // The kernel maps the ring buffer's pages whole at mmap (its data pages twice), so they are
    // in the RSS before as much as after: printed to show it, not subtracted.
    for (k, ring_before, ring_after) in rings {
        println!(
            "events at {k}: the eBPF maps' mappings (the ring buffer's) are {} of the RSS before and {} after",
            mib(ring_before),
            mib(ring_after)
        );
    }
    if evicted > 0 {
        println!("the agent evicted {evicted} connections at its --max-conns (default 200000)");
    }
    Ok(())
}

/// Holder/sink pairs holding `conns` idle connections in all, at most `chunk` per pair; returns
/// once every connection is made and accepted.
fn hold(xtask: &Path, workload: &Path, conns: usize, chunk: usize) -> Result<Vec<(Proc, Proc)>> {
    let n = conns.div_ceil(chunk).max(1);
    let mut pairs = Vec::new();
    let mut outs: Vec<Receiver<String>> = Vec::new();
    for i in 0..n {
        let count = conns / n + usize::from(i < conns % n);
        let mut sink = Proc::spawn(piped(Command::new(xtask).args(["bench", "--child", "sink"])))?;
        let addr = next_line(&sink.lines()?, "ready", Duration::from_secs(10))?;
        let mut cmd = Command::new(workload);
        piped(cmd.args(["hold", &addr, &count.to_string()]));
        // SAFETY: raise_nofile only makes two async-signal-safe syscalls.
        unsafe { cmd.pre_exec(|| Ok(_ = raise_nofile())) };
        let mut holder = Proc::spawn(&mut cmd)?;
        outs.push(holder.lines()?);
        pairs.push((sink, holder));
    }
    for (out, (sink, _)) in outs.iter().zip(&mut pairs) {
        let count = next_line(out, "ready", Duration::from_secs(600)).context("holder not ready")?;
        let count: usize = count.parse().context("holder's ready line")?;
        let pid = sink.0.id();
        sink.wait_for("every connection accepted", 60, || fd_count(pid) >= count)?;
    }
    Ok(pairs)
}

fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// A `kB` field of /proc/PID/status (`VmRSS:`, `VmHWM:`), in bytes.
fn status_bytes(pid: u32, key: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.split_whitespace().next()?.parse().ok());
    1024 * field.unwrap_or(0u64)
}

/// Resident bytes of `pid`'s mappings of `name` (/proc/PID/smaps).
fn map_rss(pid: u32, name: &str) -> u64 {
    let smaps = fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let (mut inside, mut total) = (false, 0);
    for line in smaps.lines() {
        if let Some(kb) = line.strip_prefix("Rss:") {
            if inside {
                total += 1024
                    * kb.split_whitespace()
                        .next()
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0);
            }
        } else if line
            .split_whitespace()
            .next()
            .is_some_and(|f| f.contains('-') && f.len() > 8)
        {
            inside = line.trim_end().ends_with(name);
        }
    }
    total
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
}
