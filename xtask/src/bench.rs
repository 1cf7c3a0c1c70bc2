//! `cargo xtask bench`: what a tracer costs a TCP connection churn, side by side in one run.
//!
//! The churn runs in a child process (`target/release/xtask bench --child churn`): N client threads
//! connect to a loopback server pool in the same process, send 32 bytes, read 32 back and close
//! (client first), for a fixed time. Every configuration (nothing attached, connlife's in-kernel
//! `floor` counter, connlife on all processes and on the churn's pid, libbpf-tools tcpstates and
//! tcplife) runs once per round, each round in a rotated order so that drift spreads over all of
//! them. The churn child starts paused, the tracer attaches, the churn runs, and the tracer is
//! stopped with SIGINT while the churn child still lives (connlife stops by itself when its pids
//! exit, without a final summary). A benchmark: it prints numbers and asserts nothing about them.
//! Every child is killed when its handle drops (errors included) and shares our process group,
//! so a Ctrl-C reaches them all.
//!
//! `--memory` measures connlife's resident memory per tracked connection instead: K idle
//! connections held by `connlife-workload hold` processes, each against its own `--child sink`
//! (accepts and keeps). Both sides need one fd per connection, so they are split into chunks that
//! fit RLIMIT_NOFILE's hard limit (raising it needs CAP_SYS_RESOURCE) and the ephemeral port range.

use anyhow::{bail, ensure, Context, Result};
use clap::ValueEnum;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use std::{fs, thread};

use crate::util::{next_line, shown, Proc};

/// connlife events per churned connection: 5 state changes at each end, 1 accept, 2 fd closes,
/// 2 exchanges. The listener's own changes happen before the tracer attaches.
const CONNLIFE_PER_CONN: u64 = 15;
/// State changes per connection (both ends): what the floor counter should count.
const STATES_PER_CONN: u64 = 10;
const SUMMARY: &str = r#"{"type":"summary""#;

#[derive(clap::Args)]
pub struct Args {
    /// Churn time per configuration and round.
    #[arg(long, default_value_t = 5)]
    seconds_per_round: u64,
    /// Rounds, each running every configuration once (after one discarded warm-up churn).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Churn client threads (as many server threads answer them).
    #[arg(long, default_value_t = 2)]
    clients: usize,
    /// Only these configurations (comma-separated; default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    configs: Vec<Config>,
    /// Measure connlife's memory per tracked connection instead of the churn.
    #[arg(long)]
    memory: bool,
    /// Idle connection counts for --memory.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    memory_conns: Vec<usize>,
    /// Use the binaries in target/release as they are.
    #[arg(long)]
    no_build: bool,
    #[arg(long, hide = true)]
    child: Option<String>,
}

pub fn bench(root: &Path, args: Args) -> Result<()> {
    match args.child.as_deref() {
        Some("churn") => return churn_child(args.clients, args.seconds_per_round),
        Some("sink") => return sink_child(),
        Some(other) => bail!("unknown bench child {other}"),
        None => {}
    }
    ensure!(crate::util::is_root(), "the bench loads eBPF programs: run it as root");
    crate::setup::setup(true).context("setup")?;
    if !args.no_build {
        crate::cargo(root, "build --release -p connlife -p xtask", &[])?;
    }
    let (release, dir) = (root.join("target/release"), root.join("target/bench"));
    fs::create_dir_all(&dir).context("creating target/bench")?;
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "{} cpus, /proc/loadavg {}",
        thread::available_parallelism()?,
        load.trim()
    );
    match args.memory {
        true => memory(&release, &dir, &args.memory_conns),
        false => churn(&release, &dir, &args),
    }
}

fn piped(cmd: &mut Command) -> &mut Command {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped())
}

/// Raises RLIMIT_NOFILE's soft limit to the hard one; returns it.
fn raise_nofile() -> libc::rlim_t {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: both calls only read or write the struct passed; async-signal-safe (pre_exec).
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
        rl.rlim_cur = rl.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
    }
    rl.rlim_max
}

/// SIGINT, then up to 15 s to print its report (SIGKILL on drop after that).
fn interrupt(p: &mut Proc) -> Result<()> {
    let exited = p.stop(libc::SIGINT, false, Duration::from_secs(15))?;
    ensure!(exited.is_some(), "no exit 15 s after SIGINT");
    Ok(())
}

fn say(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    Ok(out.flush()?)
}

// ---------------------------------------------------------------------------------------------
// Children: the churn and the sink

/// `ready ADDR`, waits for a line, churns for `secs`, prints `done CONNS FAILED SECONDS`, then
/// lives on until its stdin closes.
fn churn_child(clients: usize, secs: u64) -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding the churn server")?;
    let addr = listener.local_addr()?;
    for _ in 0..clients {
        let l = listener.try_clone()?;
        thread::spawn(move || serve(l));
    }
    say(&format!("ready {addr}"))?;
    std::io::stdin().read_line(&mut String::new())?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let workers: Vec<_> = (0..clients)
        .map(|_| thread::spawn(move || client(addr, deadline)))
        .collect();
    let (mut conns, mut failed) = (0, 0);
    for w in workers {
        let (c, f) = w.join().expect("churn client panicked");
        (conns, failed) = (conns + c, failed + f);
    }
    say(&format!("done {conns} {failed} {:.6}", started.elapsed().as_secs_f64()))?;
    std::io::stdin().read_to_end(&mut Vec::new())?;
    Ok(())
}

/// Answers 32 bytes with 32 bytes, then waits for the client to close first.
fn serve(l: TcpListener) {
    let mut buf = [0u8; 32];
    for mut s in l.incoming().flatten() {
        if s.read_exact(&mut buf).is_ok() && s.write_all(&buf).is_ok() {
            let _ = s.read(&mut buf);
        }
    }
}

/// Connections completed and failed until `deadline`.
fn client(addr: SocketAddr, deadline: Instant) -> (u64, u64) {
    let (mut ok, mut failed) = (0, 0);
    let mut buf = [b'x'; 32];
    while Instant::now() < deadline {
        let r = TcpStream::connect(addr).and_then(|mut s| {
            s.write_all(&buf)?;
            s.read_exact(&mut buf)
        });
        *(if r.is_ok() { &mut ok } else { &mut failed }) += 1;
    }
    (ok, failed)
}

/// `ready ADDR`, then accepts and keeps every connection until its stdin closes.
fn sink_child() -> Result<()> {
    raise_nofile();
    let l = TcpListener::bind("127.0.0.1:0").context("binding the sink")?;
    say(&format!("ready {}", l.local_addr()?))?;
    thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming() {
            match s {
                Ok(s) => held.push(s),
                Err(e) => return eprintln!("sink: accept: {e} after {} connections", held.len()),
            }
        }
    });
    std::io::stdin().read_to_end(&mut Vec::new())?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Overhead rounds

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Config {
    Baseline,
    Floor,
    ConnlifeAll,
    ConnlifePid,
    /// `connlife agent`: every process, findings-only JSON and /metrics (the fleet mode).
    Agent,
    Tcpstates,
    Tcplife,
}

use Config::*;

impl Config {
    fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }

    /// The tracer's command (stdio not set yet); None for the baseline.
    fn command(self, connlife: &Path, churn_pid: &str) -> Option<Command> {
        let (bin, args): (&Path, &[&str]) = match self {
            Baseline => return None,
            Floor => (connlife, &["floor"]),
            ConnlifeAll => (connlife, &["--json", "--interval", "1s"]),
            ConnlifePid => (connlife, &["--json", "--interval", "1s", "--pid", churn_pid]),
            // Its default --interval (15 s): the fleet configuration.
            Agent => (connlife, &["agent", "--listen", "127.0.0.1:0"]),
            Tcpstates => (Path::new("/usr/sbin/tcpstates"), &[]),
            Tcplife => (Path::new("/usr/sbin/tcplife"), &[]),
        };
        let mut cmd = Command::new(bin);
        cmd.args(args);
        Some(cmd)
    }

    /// Events it should count for `conns` churned connections, if it counts them.
    fn expected(self, conns: u64) -> Option<u64> {
        match self {
            Floor => Some(STATES_PER_CONN * conns),
            ConnlifeAll | ConnlifePid | Agent => Some(CONNLIFE_PER_CONN * conns),
            _ => None,
        }
    }
}

struct Sample {
    config: Config,
    conns: u64,
    /// Connections that failed (connect, write or read).
    failed: u64,
    secs: f64,
    /// Events received while attached and lost (connlife: kernel drops + decode errors).
    events: Option<(u64, Option<u64>)>,
    /// CPU seconds (user + system) the tracer process used while the churn ran (and 300 ms more).
    tracer_cpu: Option<f64>,
}

impl Sample {
    fn rate(&self) -> f64 {
        self.conns as f64 / self.secs
    }
}

fn churn(release: &Path, dir: &Path, args: &Args) -> Result<()> {
    let connlife = release.join("connlife");
    let (secs, clients) = (args.seconds_per_round, args.clients);
    let mut churn_cmd = Command::new(release.join("xtask"));
    churn_cmd.args(format!("bench --child churn --seconds-per-round {secs} --clients {clients}").split(' '));
    println!(
        "churn         {}  (paused until the tracer is ready)",
        shown(&churn_cmd)
    );
    let wanted = if args.configs.is_empty() {
        Config::value_variants()
    } else {
        &args.configs[..]
    };
    let (mut configs, mut missing) = (Vec::new(), Vec::new());
    for &c in wanted {
        let Some(cmd) = c.command(&connlife, "<churn pid>") else {
            configs.push(c);
            continue;
        };
        println!("{:<13} {}", c.name(), shown(&cmd));
        let bin = Path::new(cmd.get_program());
        let help = || {
            Command::new(bin)
                .args(["floor", "--help"])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !bin.is_file() {
            missing.push((c, format!("not available: {} not found", bin.display())));
        } else if c == Floor && !help() {
            missing.push((c, "not available: connlife has no `floor` subcommand".to_string()));
        } else {
            configs.push(c);
        }
    }
    println!();
    let warm_up = churn_round(Baseline, &mut churn_cmd, &connlife, dir, secs).context("warm-up")?;
    println!("warm-up  baseline      {:>7.0} conn/s  (discarded)", warm_up.rate());
    let mut samples = Vec::new();
    for round in 1..=args.rounds {
        let mut order = configs.clone();
        order.rotate_left((round - 1) % configs.len().max(1));
        for c in order {
            let s = churn_round(c, &mut churn_cmd, &connlife, dir, secs)
                .with_context(|| format!("round {round}, {}", c.name()))?;
            let (name, rate, conns, took) = (c.name(), s.rate(), s.conns, s.secs);
            print!("round {round}  {name:<13} {rate:>7.0} conn/s  {conns:>7} conns in {took:.2} s");
            if let Some(cpu) = s.tracer_cpu {
                print!(
                    "  tracer cpu {cpu:.2} s ({:.0} us/conn)",
                    cpu * 1e6 / conns.max(1) as f64
                );
            }
            if s.failed > 0 {
                print!("  ({} failed)", s.failed);
            }
            if let (Some((recv, lost)), Some(expected)) = (s.events, c.expected(conns)) {
                print!(
                    "  events {recv}/{expected} ({:.2}/conn)",
                    recv as f64 / conns.max(1) as f64
                );
                lost.into_iter().for_each(|l| print!("  lost {l}"));
            }
            println!();
            samples.push(s);
        }
    }
    let rounds = args.rounds;
    println!(
        "\nmedian of {rounds} rounds of {secs} s, {clients} client threads; events, lost: sums; tracer cpu: its user+sys time per churned conn"
    );
    println!("config          conn/s  ratio   events recv/expected (per conn)      lost  tracer cpu us/conn");
    let rate = |c| median(&samples, c, |s| Some(s.rate())).unwrap_or(f64::NAN);
    let base = rate(Baseline);
    for c in configs {
        let (name, rate) = (c.name(), rate(c));
        let cpu = median(&samples, c, |s| Some(s.tracer_cpu? * 1e6 / s.conns.max(1) as f64))
            .map(|t| format!("{t:.0}"))
            .unwrap_or_default();
        let (mut recv, mut conns, mut lost) = (0, 0, None::<u64>);
        for s in samples.iter().filter(|s| s.config == c) {
            let Some((r, l)) = s.events else { continue };
            (recv, conns, lost) = (recv + r, conns + s.conns, l.map(|l| l + lost.unwrap_or(0)).or(lost));
        }
        let per = recv as f64 / conns.max(1) as f64;
        let events = c
            .expected(conns)
            .map(|e| format!("{recv}/{e} ({per:.2})"))
            .unwrap_or_default();
        let lost = lost.map(|l| l.to_string()).unwrap_or_default();
        println!(
            "{name:<13} {rate:>8.0} {:>6.2}   {events:<34} {lost:>6}  {cpu:>18}",
            rate / base
        );
    }
    for (c, why) in missing {
        println!("{:<13} {why}", c.name());
    }
    println!("(per conn: connlife expects {CONNLIFE_PER_CONN}, the floor {STATES_PER_CONN}; connlife-all also sees the rest of the machine)");
    Ok(())
}

/// The median over `c`'s rounds of what `f` gives (None when it gives nothing).
fn median(samples: &[Sample], c: Config, f: impl Fn(&Sample) -> Option<f64>) -> Option<f64> {
    let mut r: Vec<f64> = samples.iter().filter(|s| s.config == c).filter_map(f).collect();
    r.sort_by(f64::total_cmp);
    let n = r.len();
    (n > 0).then(|| (r[(n - 1) / 2] + r[n / 2]) / 2.0)
}

fn churn_round(c: Config, churn_cmd: &mut Command, connlife: &Path, dir: &Path, secs: u64) -> Result<Sample> {
    let mut churn = Proc::spawn(piped(churn_cmd))?;
    let (out, mut go) = (churn.lines()?, churn.0.stdin.take().context("churn stdin")?);
    next_line(&out, "ready", Duration::from_secs(10))?;
    let (out_path, err_path) = (dir.join(c.name() + ".out"), dir.join(c.name() + ".err"));
    let mut tracer = None;
    if let Some(mut cmd) = c.command(connlife, &churn.0.id().to_string()) {
        // tcpstates and tcplife print a line per event: to /dev/null, as one would run them.
        let stdout = match c {
            Tcpstates | Tcplife => Stdio::null(),
            _ => fs::File::create(&out_path)?.into(),
        };
        cmd.stdin(Stdio::null())
            .stdout(stdout)
            .stderr(fs::File::create(&err_path)?);
        let p = tracer.insert(Proc::spawn(&mut cmd)?);
        // Attached: connlife's first summary, the floor's `ready`, or (tcpstates, tcplife, whose
        // header sits in a stdio buffer) a bpf_link among the tracer's fds.
        let read = |p: &Path| fs::read_to_string(p).unwrap_or_default();
        let pid = p.0.id();
        let attached = p.wait_for("attaching", 60, || match c {
            Floor => read(&err_path).lines().any(|l| l.trim() == "ready"),
            ConnlifeAll | ConnlifePid | Agent => read(&out_path).contains(SUMMARY),
            _ => has_bpf_link(pid),
        });
        attached.with_context(|| format!("{}: {}", c.name(), read(&err_path).trim()))?;
        thread::sleep(Duration::from_millis(200));
    }
    let cpu_before = tracer.as_ref().and_then(|p| cpu_seconds(p.0.id()));
    writeln!(go, "go")?;
    let done = next_line(&out, "done", Duration::from_secs(secs + 60))?;
    let f: Vec<f64> = done.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    let [conns, failed, took] = f[..] else {
        bail!("bad churn line `done {done}`")
    };
    let (mut events, mut tracer_cpu) = (None, None);
    if let Some(p) = tracer.as_mut() {
        thread::sleep(Duration::from_millis(300)); // the last events in flight
        tracer_cpu = cpu_seconds(p.0.id())
            .zip(cpu_before)
            .map(|(after, before)| after - before);
        interrupt(p).with_context(|| format!("stopping {}", c.name()))?;
        let text = fs::read_to_string(&out_path).unwrap_or_default();
        let summaries: Vec<&str> = text.lines().filter(|l| l.starts_with(SUMMARY)).collect();
        let get = |l: Option<&&str>, key| l.and_then(|l| json_u64(l, key));
        events = match c {
            Floor => {
                let line = text.lines().find(|l| l.contains(r#""type":"floor""#));
                Some((
                    line.and_then(|l| json_u64(l, "/count")).context("no floor count")?,
                    None,
                ))
            }
            ConnlifeAll | ConnlifePid | Agent => {
                let last = get(summaries.last(), "/events").context("no final summary")?;
                let recv = last - get(summaries.first(), "/events").unwrap_or(0);
                Some((recv, get(summaries.last(), "/lost_events")))
            }
            _ => None,
        };
        let _ = fs::remove_file(&out_path);
    }
    drop(go); // EOF: the churn child exits
    let (conns, failed) = (conns as u64, failed as u64);
    Ok(Sample {
        config: c,
        conns,
        failed,
        secs: took,
        events,
        tracer_cpu,
    })
}

/// utime + stime of a live process, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace().skip(11);
    let ticks: f64 = fields.next()?.parse::<f64>().ok()? + fields.next()?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    Some(ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64)
}

fn has_bpf_link(pid: u32) -> bool {
    let mut fds = fs::read_dir(format!("/proc/{pid}/fd")).into_iter().flatten().flatten();
    fds.any(|fd| fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy().contains("bpf_link")))
}

/// The number at a JSON pointer (`/events`, `/by_state/ESTABLISHED`) of one JSON line.
fn json_u64(line: &str, pointer: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()?
        .pointer(pointer)?
        .as_u64()
}

// ---------------------------------------------------------------------------------------------
// Memory per tracked connection

fn memory(release: &Path, dir: &Path, ks: &[usize]) -> Result<()> {
    let (connlife, xtask) = (release.join("connlife"), release.join("xtask"));
    let workload = release.join("connlife-workload");
    // One fd per connection on each side, within the hard limit and the ephemeral port range.
    let chunk = (raise_nofile().saturating_sub(1000) as usize).clamp(1000, 25_000);
    let args = ["--json", "--interval", "1s", "--idle-after", "1h"];
    println!(
        "connlife: {} {} --pid <holder pid>...",
        connlife.display(),
        args.join(" ")
    );
    let hold = workload.display();
    println!("holders:  {hold} hold <sink addr> <count>  (<= {chunk} each; RLIMIT_NOFILE soft raised to hard)");
    println!(
        "sinks:    {} bench --child sink  (one per holder: accepts and keeps)",
        xtask.display()
    );
    println!("\n  conns holders ESTABLISHED       VmRSS       VmHWM bytes/conn  marginal  snapshot");
    let (mut base, mut prev) = (None, (0, 0));
    for k in std::iter::once(0).chain(ks.iter().copied()) {
        let (mut sinks, mut holders) = (Vec::new(), Vec::new());
        for n in (0..k.div_ceil(chunk).max(1)).map(|i| (k - i * chunk).min(chunk)) {
            let mut sink = Proc::spawn(piped(Command::new(&xtask).args(["bench", "--child", "sink"])))?;
            let addr = next_line(&sink.lines()?, "ready", Duration::from_secs(10))?;
            sinks.push(sink);
            let mut cmd = Command::new(&workload);
            piped(cmd.args(["hold", &addr, &n.to_string()]));
            // SAFETY: raise_nofile only makes two async-signal-safe syscalls.
            unsafe { cmd.pre_exec(|| Ok(_ = raise_nofile())) };
            let mut holder = Proc::spawn(&mut cmd)?;
            holders.push((holder.lines()?, holder));
        }
        for (out, _) in &holders {
            next_line(out, "ready", Duration::from_secs(600)).context("holder not ready")?;
        }
        let (out_path, err_path) = (dir.join("memory.out"), dir.join("memory.err"));
        let pids: Vec<String> = holders.iter().map(|(_, h)| h.0.id().to_string()).collect();
        let mut cmd = Command::new(&connlife);
        cmd.args(args).args(pids.iter().flat_map(|p| ["--pid", p]));
        cmd.stdout(fs::File::create(&out_path)?)
            .stderr(fs::File::create(&err_path)?);
        let started = Instant::now();
        let mut p = Proc::spawn(&mut cmd)?;
        let mut summary = String::new();
        p.wait_for("first summary", 600, || {
            let text = fs::read_to_string(&out_path).unwrap_or_default();
            summary = text
                .lines()
                .find(|l| l.starts_with(SUMMARY))
                .unwrap_or_default()
                .to_string();
            !summary.is_empty()
        })
        .with_context(|| format!("connlife: see {}", err_path.display()))?;
        let snapshot = started.elapsed().as_secs_f64();
        let status = fs::read_to_string(format!("/proc/{}/status", p.0.id()))?;
        let bytes = |key: &str| {
            let field = status
                .lines()
                .find_map(|l| l.strip_prefix(key)?.split_whitespace().next()?.parse().ok());
            1024 * field.unwrap_or(0u64)
        };
        let (rss, hwm) = (bytes("VmRSS:"), bytes("VmHWM:"));
        let established = json_u64(&summary, "/by_state/ESTABLISHED").unwrap_or(0);
        let slope = |(k0, rss0): (usize, u64)| match k > k0 {
            true => format!("{:.0}", (rss as f64 - rss0 as f64) / (k - k0) as f64),
            false => "-".to_string(),
        };
        let (per, marginal) = (slope(*base.get_or_insert((0, rss))), slope(prev));
        prev = (k, rss);
        let (mib, n) = (|b: u64| format!("{:.1} MiB", b as f64 / 1048576.0), holders.len());
        println!(
            "{k:>7} {n:>7} {established:>11} {:>11} {:>11} {per:>10} {marginal:>9} {snapshot:>7.2} s",
            mib(rss),
            mib(hwm)
        );
        interrupt(&mut p).context("stopping connlife")?;
        drop(sinks); // the server ends close first: no TIME_WAIT on the holders' ports
        thread::sleep(Duration::from_millis(500));
    }
    println!("(VmRSS right after the first summary, which follows the start-up snapshot;");
    println!(" bytes/conn = (VmRSS - VmRSS at 0 conns) / conns; marginal: the same from the row above;");
    println!(" snapshot = connlife start to that summary)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_counters_from_json_lines() {
        let line = r#"{"type":"summary","by_state":{"ESTABLISHED":3},"lost_events":7,"events":42}"#;
        assert_eq!(json_u64(line, "/events"), Some(42));
        assert_eq!(json_u64(line, "/lost_events"), Some(7));
        assert_eq!(json_u64(line, "/by_state/ESTABLISHED"), Some(3));
        assert_eq!(json_u64(line, "/missing"), None);
        assert_eq!(json_u64("{\"events\":", "/events"), None);
    }

    #[test]
    fn medians_and_names() {
        let s = |config, conns| Sample {
            config,
            conns,
            failed: 0,
            secs: 1.0,
            events: None,
            tracer_cpu: None,
        };
        let samples = [
            s(Baseline, 3),
            s(Baseline, 1),
            s(Baseline, 10),
            s(Floor, 4),
            s(Floor, 2),
        ];
        assert_eq!(median(&samples, Baseline, |s| Some(s.rate())), Some(3.0));
        assert_eq!(median(&samples, Floor, |s| Some(s.rate())), Some(3.0));
        assert_eq!(median(&samples, Tcplife, |s| Some(s.rate())), None);
        assert_eq!(ConnlifePid.name(), "connlife-pid");
    }
}
