//! `cargo xtask bench`: what a tracer costs a TCP connection churn, side by side in one run.
//!
//! The churn runs in a child process (target/release/xtask bench --churn-child): N client threads
//! connect to a loopback server pool in the same process, send 32 bytes, read 32 back and close,
//! for a fixed time. Every configuration (nothing attached, connlife's in-kernel `floor` counter,
//! connlife on all processes and on the churn's pid, libbpf-tools tcpstates and tcplife) runs once
//! per round, each round in a rotated order so that drift spreads over all of them. The churn
//! child is started paused, the tracer attaches, then the churn runs; the tracer is stopped with
//! SIGINT while the churn child still lives (connlife stops by itself when its pids exit).
//! A benchmark: it prints numbers and asserts nothing about them.
//!
//! `--memory` measures connlife's resident memory per tracked connection instead: K idle
//! connections held by `connlife-workload hold` processes (at most 25,000 each, one loopback
//! listener of this process per holder, so each stays within the ephemeral port range).

use anyhow::{bail, ensure, Context, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use std::{fs, thread};

const TCPSTATES: &str = "/usr/sbin/tcpstates";
const TCPLIFE: &str = "/usr/sbin/tcplife";
/// connlife events per churned connection: 5 state changes per end, 1 accept, 2 fd closes,
/// 2 exchanges. The listener's own changes happen before the tracer attaches.
const CONNLIFE_PER_CONN: u64 = 15;
/// State changes per connection (both ends), what the floor counter should see.
const STATES_PER_CONN: u64 = 10;
const HOLD_CHUNK: usize = 25_000;
const READY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(clap::Args)]
pub struct Args {
    /// Churn time per configuration and round.
    #[arg(long, default_value_t = 5)]
    seconds_per_round: u64,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Churn client threads (as many server threads answer them).
    #[arg(long, default_value_t = 2)]
    clients: usize,
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
    churn_child: bool,
}

pub fn bench(root: &Path, args: Args) -> Result<()> {
    if args.churn_child {
        return churn_child(args.clients, args.seconds_per_round);
    }
    ensure!(crate::setup::is_root(), "the bench loads eBPF programs: run it as root");
    crate::setup::setup_for_run().context("setup")?;
    if !args.no_build {
        crate::cargo(root, &["build", "--release", "-p", "connlife", "-p", "xtask"], &[])?;
    }
    let release = root.join("target/release");
    let dir = root.join("target/bench");
    fs::create_dir_all(&dir).context("creating target/bench")?;
    if args.memory {
        memory(&release, &dir, &args.memory_conns)
    } else {
        churn(&release, &dir, &args)
    }
}

/// A child process that is killed and reaped when dropped, whatever happened before.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

impl Proc {
    fn spawn(cmd: &mut Command) -> Result<Proc> {
        let what = cmd.get_program().to_string_lossy().into_owned();
        Ok(Proc(cmd.spawn().with_context(|| format!("starting {what}"))?))
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
    /// SIGINT, then up to 15 s to finish its report, then SIGKILL.
    fn interrupt(&mut self) -> Result<()> {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.0.try_wait()?.is_none() {
            ensure!(Instant::now() < deadline, "no exit 15 s after SIGINT");
            thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

/// Lines of a child's pipe, read on a thread (so waiting for one can time out).
fn lines(r: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(|l| l.ok()) {
            let _ = tx.send(line);
        }
    });
    rx
}

fn next_line(rx: &Receiver<String>, prefix: &str, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).map_err(|e| anyhow::anyhow!("{e}"));
        let line = line.with_context(|| format!("waiting for a `{prefix}` line"))?;
        if line.starts_with(prefix) {
            return Ok(line);
        }
    }
}

fn shell_line(cmd: &Command) -> String {
    let args = cmd.get_args().map(|a| a.to_string_lossy().into_owned());
    let prog = cmd.get_program().to_string_lossy().into_owned();
    std::iter::once(prog).chain(args).collect::<Vec<_>>().join(" ")
}

// ---------------------------------------------------------------------------------------------
// The churn child

fn churn_child(clients: usize, secs: u64) -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding the churn server")?;
    let addr = listener.local_addr()?;
    for _ in 0..clients {
        let l = listener.try_clone()?;
        thread::spawn(move || serve(l));
    }
    let say = |line: String| -> Result<()> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        Ok(out.flush()?)
    };
    say(format!("ready {addr}"))?;
    let mut go = String::new();
    std::io::stdin().read_line(&mut go)?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let workers: Vec<_> = (0..clients)
        .map(|_| thread::spawn(move || client(addr, deadline)))
        .collect();
    let (mut conns, mut errors) = (0, 0);
    for w in workers {
        let (c, e) = w.join().expect("churn client panicked");
        (conns, errors) = (conns + c, errors + e);
    }
    let took = started.elapsed().as_secs_f64();
    say(format!("done {conns} {errors} {took:.6}"))?;
    // Stay alive (and traced) until the parent has stopped the tracer: EOF on stdin.
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
    let (mut ok, mut errors) = (0, 0);
    let mut buf = [b'x'; 32];
    while Instant::now() < deadline {
        let r = TcpStream::connect(addr).and_then(|mut s| {
            s.write_all(&buf)?;
            s.read_exact(&mut buf)
        });
        match r {
            Ok(()) => ok += 1,
            Err(_) => errors += 1,
        }
    }
    (ok, errors)
}

// ---------------------------------------------------------------------------------------------
// Overhead rounds

#[derive(Clone, Copy, PartialEq)]
enum Config {
    Baseline,
    Floor,
    ConnlifeAll,
    ConnlifePid,
    Tcpstates,
    Tcplife,
}

impl Config {
    const ALL: [Config; 6] = [
        Config::Baseline,
        Config::Floor,
        Config::ConnlifeAll,
        Config::ConnlifePid,
        Config::Tcpstates,
        Config::Tcplife,
    ];
    fn name(self) -> &'static str {
        match self {
            Config::Baseline => "baseline",
            Config::Floor => "floor",
            Config::ConnlifeAll => "connlife-all",
            Config::ConnlifePid => "connlife-pid",
            Config::Tcpstates => "tcpstates",
            Config::Tcplife => "tcplife",
        }
    }
    fn is_connlife(self) -> bool {
        matches!(self, Config::ConnlifeAll | Config::ConnlifePid)
    }
    /// The tracer's command (stdout and stderr not set yet); None for the baseline.
    fn command(self, connlife: &Path, churn_pid: &str) -> Option<Command> {
        let mut cmd = Command::new(match self {
            Config::Baseline => return None,
            Config::Tcpstates => Path::new(TCPSTATES),
            Config::Tcplife => Path::new(TCPLIFE),
            _ => connlife,
        });
        match self {
            Config::Floor => cmd.arg("floor"),
            Config::ConnlifeAll => cmd.args(["--json", "--interval", "1s"]),
            Config::ConnlifePid => cmd.args(["--json", "--interval", "1s", "--pid", churn_pid]),
            _ => &mut cmd,
        };
        Some(cmd)
    }
    /// Why it cannot run here, if it cannot.
    fn unavailable(self, connlife: &Path) -> Option<String> {
        let bin = match self.command(connlife, "1") {
            Some(cmd) => PathBuf::from(cmd.get_program()),
            None => return None,
        };
        if !bin.is_file() {
            return Some(format!("{} not found", bin.display()));
        }
        let floor = Command::new(connlife).args(["floor", "--help"]).output();
        (self == Config::Floor && !floor.is_ok_and(|o| o.status.success()))
            .then(|| "not available: connlife has no `floor` subcommand".to_string())
    }
}

struct Sample {
    config: Config,
    conns: u64,
    errors: u64,
    secs: f64,
    /// Events received, expected, lost (connlife: kernel drops + decode errors).
    events: Option<(u64, u64, Option<u64>)>,
}

impl Sample {
    fn rate(&self) -> f64 {
        self.conns as f64 / self.secs
    }
}

fn churn(release: &Path, dir: &Path, args: &Args) -> Result<()> {
    let connlife = release.join("connlife");
    let xtask = release.join("xtask");
    ensure!(xtask.is_file(), "{} is missing (drop --no-build)", xtask.display());
    let secs = args.seconds_per_round.to_string();
    let mut churn_cmd = Command::new(&xtask);
    churn_cmd.args(["bench", "--churn-child", "--seconds-per-round", &secs]);
    churn_cmd.args(["--clients", &args.clients.to_string()]);
    println!("churn: {}  (paused until the tracer is ready)", shell_line(&churn_cmd));
    let mut configs = Vec::new();
    let mut missing = Vec::new();
    for c in Config::ALL {
        match c.unavailable(&connlife) {
            Some(why) => missing.push((c, why)),
            None => configs.push(c),
        }
        if let Some(cmd) = c.command(&connlife, "<churn pid>") {
            println!("{:<13} {}", c.name(), shell_line(&cmd));
        }
    }
    let mut samples = Vec::new();
    for round in 0..args.rounds {
        let mut order = configs.clone();
        order.rotate_left(round % configs.len());
        for &c in &order {
            let s = churn_round(c, &mut churn_cmd, &connlife, dir, args.seconds_per_round);
            let s = s.with_context(|| format!("round {} of {}", round + 1, c.name()))?;
            print!(
                "round {} {:<13} {:>8.0} conn/s  {:>8} conns  {} errors",
                round + 1,
                c.name(),
                s.rate(),
                s.conns,
                s.errors
            );
            if let Some((recv, expected, lost)) = s.events {
                let per = recv as f64 / s.conns.max(1) as f64;
                print!("  events {recv}/{expected} ({per:.2}/conn)");
                if let Some(lost) = lost {
                    print!("  lost {lost}");
                }
            }
            println!();
            samples.push(s);
        }
    }
    println!(
        "\n{:<14} {:>10} {:>6}   {:<36} {:>8}",
        "config", "conn/s", "ratio", "events recv/expected (per conn)", "lost"
    );
    println!(
        "{:<14} {:>10} {:>6}   (median of {} rounds of {} s, {} clients)",
        "", "", "", args.rounds, secs, args.clients
    );
    let base = median(&samples, Config::Baseline);
    for c in configs {
        let rate = median(&samples, c);
        let mut events = String::new();
        let mut lost = String::new();
        let mine: Vec<&Sample> = samples.iter().filter(|s| s.config == c).collect();
        if let Some(&s) = mine.iter().max_by_key(|s| s.events.map(|e| e.0)) {
            if let Some((recv, expected, l)) = s.events {
                let per = recv as f64 / s.conns.max(1) as f64;
                events = format!("{recv}/{expected} ({per:.2})");
                lost = l.map(|l| l.to_string()).unwrap_or_default();
            }
        }
        let ratio = rate / base;
        println!("{:<14} {rate:>10.0} {ratio:>6.2}   {events:<36} {lost:>8}", c.name());
    }
    for (c, why) in missing {
        println!("{:<14} {why}", c.name());
    }
    println!("(events: the round with the most; connlife expects {CONNLIFE_PER_CONN}/conn, the floor {STATES_PER_CONN}/conn)");
    Ok(())
}

fn median(samples: &[Sample], c: Config) -> f64 {
    let mut r: Vec<f64> = samples.iter().filter(|s| s.config == c).map(Sample::rate).collect();
    r.sort_by(f64::total_cmp);
    match r.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => r[n / 2],
        n => (r[n / 2 - 1] + r[n / 2]) / 2.0,
    }
}

fn churn_round(c: Config, churn_cmd: &mut Command, connlife: &Path, dir: &Path, secs: u64) -> Result<Sample> {
    let mut churn = Proc::spawn(churn_cmd.stdin(Stdio::piped()).stdout(Stdio::piped()))?;
    let out = lines(churn.0.stdout.take().context("churn stdout")?);
    let mut go: ChildStdin = churn.0.stdin.take().context("churn stdin")?;
    next_line(&out, "ready", Duration::from_secs(10))?;
    let (out_path, err_path) = (
        dir.join(format!("{}.out", c.name())),
        dir.join(format!("{}.err", c.name())),
    );
    let mut tracer = match c.command(connlife, &churn.pid().to_string()) {
        None => None,
        Some(mut cmd) => {
            let stdout = match c {
                Config::Tcpstates | Config::Tcplife => Stdio::null(),
                _ => fs::File::create(&out_path)?.into(),
            };
            cmd.stdin(Stdio::null())
                .stdout(stdout)
                .stderr(fs::File::create(&err_path)?);
            let mut p = Proc::spawn(&mut cmd)?;
            wait_ready(c, &mut p, &out_path, &err_path)?;
            Some(p)
        }
    };
    writeln!(go, "go")?;
    let done = next_line(&out, "done", Duration::from_secs(secs + 60))?;
    let f: Vec<&str> = done.split_whitespace().collect();
    let parse = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).context("bad `done` line");
    let (conns, errors, took) = (parse(1)? as u64, parse(2)? as u64, parse(3)?);
    let mut events = None;
    if let Some(p) = tracer.as_mut() {
        thread::sleep(Duration::from_millis(300)); // the last events in flight
        p.interrupt().with_context(|| format!("stopping {}", c.name()))?;
        let text = fs::read_to_string(&out_path).unwrap_or_default();
        if c.is_connlife() {
            let summaries: Vec<&str> = text.lines().filter(|l| l.starts_with(r#"{"type":"summary""#)).collect();
            let (first, last) = (summaries.first(), summaries.last());
            let get = |l: Option<&&str>, key| l.and_then(|l| json_u64(l, key));
            let recv = get(last, "events").context("no final summary")? - get(first, "events").unwrap_or(0);
            events = Some((recv, CONNLIFE_PER_CONN * conns, get(last, "lost_events")));
        } else if c == Config::Floor {
            let line = text.lines().find(|l| l.contains(r#""type":"floor""#));
            let count = line.and_then(|l| json_u64(l, "count")).context("no floor count")?;
            events = Some((count, STATES_PER_CONN * conns, None));
        }
        let _ = fs::remove_file(&out_path);
    }
    drop(go); // EOF: the churn child exits
    Ok(Sample {
        config: c,
        conns,
        errors,
        secs: took,
        events,
    })
}

/// Waits until the tracer is attached: connlife's first summary, the floor's `ready`, or a
/// bpf_link among the fds of tcpstates/tcplife (their header sits in a stdio buffer).
fn wait_ready(c: Config, p: &mut Proc, out: &Path, err: &Path) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let read = |p: &Path| fs::read_to_string(p).unwrap_or_default();
        if let Some(status) = p.0.try_wait()? {
            bail!(
                "{} exited before it was ready ({status}): {}",
                c.name(),
                read(err).trim()
            );
        }
        let ready = match c {
            Config::Floor => read(err).lines().any(|l| l.trim() == "ready"),
            _ if c.is_connlife() => read(out).contains(r#"{"type":"summary""#),
            _ => has_bpf_link(p.pid()),
        };
        if ready {
            thread::sleep(Duration::from_millis(200));
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{} not ready after {READY_TIMEOUT:?}",
            c.name()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn has_bpf_link(pid: u32) -> bool {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy().contains("bpf_link")))
}

/// `"key":123` in a JSON line (the last occurrence: summaries end with their counters).
fn json_u64(line: &str, key: &str) -> Option<u64> {
    let pat = format!("\"{key}\":");
    let rest = &line[line.rfind(&pat)? + pat.len()..];
    let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Memory per tracked connection

fn memory(release: &Path, dir: &Path, ks: &[usize]) -> Result<()> {
    let (connlife, workload) = (release.join("connlife"), release.join("connlife-workload"));
    let most = ks.iter().copied().max().unwrap_or(0);
    // Our listeners keep the server ends; the holders inherit the limit.
    let limit = (most + 8192) as libc::rlim_t;
    let rl = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: setrlimit reads a valid struct.
    ensure!(
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) } == 0,
        "setrlimit(NOFILE, {limit})"
    );
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let mut addrs = Vec::new();
    for _ in 0..most.div_ceil(HOLD_CHUNK).max(1) {
        let l = TcpListener::bind("127.0.0.1:0")?;
        addrs.push(l.local_addr()?);
        let held = held.clone();
        thread::spawn(move || l.incoming().flatten().for_each(|s| held.lock().unwrap().push(s)));
    }
    let args = ["--json", "--interval", "1s", "--idle-after", "1h"];
    println!(
        "connlife: {} {} --pid <holder pid>...",
        connlife.display(),
        args.join(" ")
    );
    println!(
        "holders:  {} hold <listener of this process> <count <= {HOLD_CHUNK}>",
        workload.display()
    );
    println!(
        "\n{:>8} {:>12} {:>12} {:>12} {:>14} {:>12}",
        "conns", "ESTABLISHED", "VmRSS", "VmHWM", "bytes/conn", "snapshot"
    );
    let mut base_rss = None;
    for &k in std::iter::once(&0).chain(ks) {
        let mut holders = Vec::new();
        let mut pids = Vec::new();
        let mut left = k;
        for addr in &addrs {
            let n = left.min(HOLD_CHUNK);
            let mut cmd = Command::new(&workload);
            cmd.args(["hold", &addr.to_string(), &n.to_string()])
                .stdout(Stdio::piped());
            let mut p = Proc::spawn(&mut cmd)?;
            let out = lines(p.0.stdout.take().context("holder stdout")?);
            pids.push(p.pid().to_string());
            holders.push((p, out));
            left -= n;
            if left == 0 {
                break;
            }
        }
        for (_, out) in &holders {
            next_line(out, "ready", Duration::from_secs(300)).context("holder not ready")?;
        }
        let out_path = dir.join("memory.out");
        let mut cmd = Command::new(&connlife);
        cmd.args(args).args(pids.iter().flat_map(|p| ["--pid", p]));
        cmd.stdout(fs::File::create(&out_path)?)
            .stderr(fs::File::create(dir.join("memory.err"))?);
        let started = Instant::now();
        let mut p = Proc::spawn(&mut cmd)?;
        let summary = loop {
            let text = fs::read_to_string(&out_path).unwrap_or_default();
            if let Some(l) = text.lines().find(|l| l.starts_with(r#"{"type":"summary""#)) {
                break l.to_string();
            }
            ensure!(
                p.0.try_wait()?.is_none(),
                "connlife exited: see {}",
                dir.join("memory.err").display()
            );
            ensure!(started.elapsed() < Duration::from_secs(600), "no summary after 600 s");
            thread::sleep(Duration::from_millis(5));
        };
        let snapshot = started.elapsed();
        let status = fs::read_to_string(format!("/proc/{}/status", p.pid()))?;
        let kb = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let (rss, hwm) = (kb("VmRSS:") * 1024, kb("VmHWM:") * 1024);
        let states = summary
            .split(r#""by_state":{"#)
            .nth(1)
            .and_then(|s| s.split('}').next())
            .unwrap_or("");
        let established = json_u64(states, "ESTABLISHED").unwrap_or(0);
        let per = match base_rss {
            Some(b) if k > 0 => format!("{:.0}", (rss as f64 - b as f64) / k as f64),
            _ => "-".to_string(),
        };
        base_rss.get_or_insert(rss);
        let mib = |b: u64| format!("{:.1} MiB", b as f64 / 1048576.0);
        println!(
            "{k:>8} {established:>12} {:>12} {:>12} {per:>14} {:>10.2} s",
            mib(rss),
            mib(hwm),
            snapshot.as_secs_f64()
        );
        p.interrupt().context("stopping connlife")?;
        held.lock().unwrap().clear(); // server ends close first: no TIME_WAIT on the holders' ports
        drop(holders);
        thread::sleep(Duration::from_millis(500));
    }
    println!("(VmRSS right after the first summary, which follows the start-up snapshot; bytes/conn = (VmRSS - VmRSS at 0) / conns)");
    Ok(())
}
