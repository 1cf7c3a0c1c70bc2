//! Test harness for the privileged tests: a private network namespace per test, processes
//! spawned inside it, the real connlife binary run with --json and its lines collected, and the
//! Go workloads built from workloads/go with Debian's Go.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Write},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::process::CommandExt,
    },
    path::PathBuf,
    process::{Child, ChildStdin, Command, Stdio},
    sync::{
        mpsc::{self, Receiver},
        OnceLock,
    },
    time::{Duration, Instant},
};

use serde_json::Value;

pub const CONNLIFE: &str = env!("CARGO_BIN_EXE_connlife");
pub const WORKLOAD: &str = env!("CARGO_BIN_EXE_connlife-workload");
/// Deadline for things that should happen in well under a second; only a hang reaches it.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A loopback TCP port free at the time of asking (for an endpoint a test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn require_root() {
    assert!(
        unsafe { libc::geteuid() } == 0,
        "privileged test: run as root (it loads eBPF programs; CI runs as root)"
    );
}

/// A fresh network namespace with lo up, kept alive by an fd.
pub struct NetNs {
    fd: OwnedFd,
}

impl NetNs {
    pub fn new() -> NetNs {
        require_root();
        let fd = std::thread::spawn(|| unsafe {
            assert_eq!(
                libc::unshare(libc::CLONE_NEWNET),
                0,
                "unshare(CLONE_NEWNET): {}",
                std::io::Error::last_os_error()
            );
            lo_up();
            let fd = libc::open(c"/proc/thread-self/ns/net".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            assert!(fd >= 0, "open netns: {}", std::io::Error::last_os_error());
            OwnedFd::from_raw_fd(fd)
        })
        .join()
        .expect("netns thread");
        NetNs { fd }
    }

    /// A command that runs inside this namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        let raw = self.fd.as_raw_fd();
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(raw, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    }
}

unsafe fn lo_up() {
    let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
    assert!(s >= 0);
    let mut req: libc::ifreq = std::mem::zeroed();
    for (i, b) in b"lo\0".iter().enumerate() {
        req.ifr_name[i] = *b as libc::c_char;
    }
    assert_eq!(libc::ioctl(s, libc::SIOCGIFFLAGS, &mut req), 0);
    req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
    assert_eq!(libc::ioctl(s, libc::SIOCSIFFLAGS, &req), 0, "bring lo up");
    libc::close(s);
}

/// A child process whose stdout lines arrive on a channel; killed on drop.
pub struct Proc {
    pub child: Child,
    pub lines: Receiver<String>,
    /// Its stderr lines (also echoed to the test's stderr).
    pub err_lines: Receiver<String>,
    pub stdin: Option<ChildStdin>,
    pub name: String,
}

impl Proc {
    /// In a process group of its own, so that its children (a forking server's) end with it.
    pub fn spawn(mut cmd: Command, name: &str) -> Proc {
        cmd.stdout(Stdio::piped()).stdin(Stdio::piped()).stderr(Stdio::piped());
        cmd.process_group(0);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let tag = name.to_string();
        let (err_tx, err_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[{tag}] {line}");
                let _ = err_tx.send(line);
            }
        });
        let stdin = child.stdin.take();
        Proc {
            child,
            lines: rx,
            err_lines: err_rx,
            stdin,
            name: name.to_string(),
        }
    }

    /// Next stderr line matching `pred` (every line is echoed to the test's stderr as well),
    /// or panic after PATIENCE.
    pub fn wait_err_line(&self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.err_lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(_) => {}
                Err(e) => panic!("{}: no matching stderr line ({e})", self.name),
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Next stdout line matching `pred`, or panic after PATIENCE.
    pub fn wait_line(&self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(_) => {}
                Err(e) => panic!("{}: no matching line ({e})", self.name),
            }
        }
    }

    pub fn go(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin");
        stdin.write_all(b"go\n").expect("write go");
        stdin.flush().expect("flush");
    }

    pub fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st;
            }
            assert!(Instant::now() < deadline, "{} did not exit", self.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // The whole group: forked children too.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The real connlife binary tracing `pids` with --json; waits for its start-up summary.
pub struct Connlife {
    pub proc: Proc,
    /// Every JSON line received so far.
    pub seen: Vec<Value>,
}

impl Connlife {
    pub fn start(pids: &[u32], extra: &[&str]) -> Connlife {
        require_root();
        let mut cmd = Command::new(CONNLIFE);
        cmd.arg("--json");
        for pid in pids {
            cmd.args(["--pid", &pid.to_string()]);
        }
        cmd.args(extra);
        let proc = Proc::spawn(cmd, "connlife");
        let mut c = Connlife { proc, seen: Vec::new() };
        c.wait_for(|v| v["type"] == "summary");
        c
    }

    /// Collect lines until one matches `pred` (returned), or panic after PATIENCE.
    pub fn wait_for(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.proc.lines.recv_timeout(left) {
                Ok(line) => {
                    let v: Value = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("connlife printed non-JSON {line:?}: {e}"));
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(e) => panic!("connlife: no matching line ({e}); seen so far:\n{}", self.dump()),
            }
        }
    }

    /// Collect lines until `n` of those seen match `pred`; returns them.
    pub fn wait_count(&mut self, n: usize, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        loop {
            let have: Vec<Value> = self.seen.iter().filter(|v| pred(v)).cloned().collect();
            if have.len() >= n {
                return have;
            }
            self.wait_for(&pred);
        }
    }

    /// Collect lines for `d` (for asserting that something does NOT happen).
    pub fn collect_for(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while let Ok(line) = self
            .proc
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if let Ok(v) = serde_json::from_str(&line) {
                self.seen.push(v);
            }
        }
    }

    /// Ctrl-C: the final summary and report, then exit.
    pub fn stop(&mut self) {
        self.proc.signal(libc::SIGINT);
        let st = self.proc.wait_exit();
        while let Ok(line) = self.proc.lines.recv_timeout(Duration::from_secs(2)) {
            if let Ok(v) = serde_json::from_str(&line) {
                self.seen.push(v);
            }
        }
        assert!(st.success(), "connlife exited with {st}");
    }

    pub fn of_type(&self, ty: &str) -> Vec<&Value> {
        self.seen.iter().filter(|v| v["type"] == ty).collect()
    }

    pub fn dump(&self) -> String {
        self.seen.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("\n")
    }
}

/// Does this kernel count use (sock_send_length/sock_recv_length, 6.3+)? From `connlife check`.
pub fn use_counting() -> bool {
    static USE: OnceLock<bool> = OnceLock::new();
    *USE.get_or_init(|| {
        let out = Command::new(CONNLIFE).arg("check").output().expect("connlife check");
        let text = String::from_utf8_lossy(&out.stdout);
        let yes = text.lines().any(|l| l == "feature use_counting yes");
        if !yes {
            eprintln!("this kernel lacks sock_send_length/sock_recv_length: asserting the documented degradation (bytes and exchanges null)");
        }
        yes
    })
}

/// What connlife must report for a counted figure: the value, or null where not counted.
pub fn counted(v: u64) -> Value {
    if use_counting() {
        Value::from(v)
    } else {
        Value::Null
    }
}

/// Build the Go workloads once per test binary (Debian's golang-go, standard library only).
pub fn go_binary(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        // Prebuilt (the kernel matrix VM has no Go toolchain).
        if let Some(dir) = std::env::var_os("CONNLIFE_GO_DIR") {
            return PathBuf::from(dir);
        }
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let out = root.join("target").join("go-workloads");
        std::fs::create_dir_all(&out).expect("mkdir target/go-workloads");
        for prog in ["server", "client"] {
            let st = Command::new("go")
                .args(["build", "-o"])
                .arg(out.join(prog))
                .arg(".")
                .current_dir(root.join("workloads/go").join(prog))
                .env("CGO_ENABLED", "0")
                .env("GOFLAGS", "-mod=mod")
                .env("GOPROXY", "off")
                .env("GOCACHE", out.join("cache"))
                .status()
                .expect("running `go build` (install golang-go: cargo xtask setup does)");
            assert!(st.success(), "go build {prog} failed");
        }
        out
    });
    dir.join(name)
}

/// The Go server (workloads/go/server) in `mode`, and the address it listens on.
pub fn go_server(ns: &NetNs, mode: &str) -> (Proc, String) {
    let mut cmd = ns.command(go_binary("server").to_str().unwrap());
    cmd.args(["-mode", mode]);
    let p = Proc::spawn(cmd, &format!("go-server-{mode}"));
    let addr = ready_addr(&p);
    (p, addr)
}

/// The Go client (workloads/go/client) in `mode` against `addr`, waiting for [`Proc::go`].
pub fn go_client(ns: &NetNs, addr: &str, mode: &str, extra: &[&str]) -> Proc {
    let mut cmd = ns.command(go_binary("client").to_str().unwrap());
    cmd.args(["-url", &format!("http://{addr}/"), "-mode", mode, "-wait-stdin"])
        .args(extra);
    Proc::spawn(cmd, &format!("go-client-{mode}"))
}

pub fn workload(ns: &NetNs, args: &[&str], name: &str) -> Proc {
    let mut cmd = ns.command(WORKLOAD);
    cmd.args(args);
    Proc::spawn(cmd, name)
}

/// The demo's leaky client (`connlife-workload demo-client`: keep-alive connections left idle
/// and response bodies never read to EOF) against a keep-alive and a closing server in `ns`,
/// traced by connlife with 2 s thresholds and 1 s summaries. The client waits for `go()`.
pub struct TracedDemoClient {
    /// The keep-alive and the closing server, alive as long as this.
    pub servers: [Proc; 2],
    pub client: Proc,
    pub connlife: Connlife,
}

pub fn traced_demo_client(ns: &NetNs) -> TracedDemoClient {
    let keepalive = workload(ns, &["server", "keepalive"], "keepalive-server");
    let closing = workload(ns, &["server", "close"], "closing-server");
    let (ka, ca) = (ready_addr(&keepalive), ready_addr(&closing));
    let client = workload(ns, &["demo-client", &ka, &ca], "demo-client");
    let connlife = Connlife::start(
        &[client.pid()],
        &["--idle-after", "2s", "--close-wait-after", "2s", "--interval", "1s"],
    );
    TracedDemoClient {
        servers: [keepalive, closing],
        client,
        connlife,
    }
}

/// `ready 127.0.0.1:PORT` -> the address.
/// `ss -tanpH` in the network namespace of `pid`: one line per TCP socket, with its holders.
pub fn ss_lines(pid: u32) -> Vec<String> {
    let out = Command::new("nsenter")
        .args([format!("--net=/proc/{pid}/ns/net"), "ss".into(), "-tanpH".into()])
        .output()
        .expect("nsenter ss (iproute2)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

pub fn ready_addr(p: &Proc) -> String {
    let line = p.wait_line(|l| l.starts_with("ready ") || l.starts_with("listening "));
    line.split_whitespace().nth(1).expect("address").to_string()
}

/// `path` copied where any user can run it: the checkout may sit in a directory only root can
/// enter (a clone in a 0700 mktemp dir), and the least-privilege tests run as uid 65534.
/// Copy a program under a name of this thread's, then rename it into place: another test
/// thread that finds the copy must never exec a file still being written (ETXTBSY).
pub fn copy_without_holding_it(from: &str, to: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let part = to.with_extension(format!("{:?}.part", std::thread::current().id()));
    std::fs::copy(from, &part).unwrap();
    std::fs::set_permissions(&part, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&part, to).unwrap();
}

pub fn runnable_by_anyone(path: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("connlife-test-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let name = std::path::Path::new(path).file_name().unwrap();
    let copy = dir.join(name);
    if !copy.exists() {
        copy_without_holding_it(path, &copy);
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    copy.to_string_lossy().into_owned()
}

/// Build `tests/programs/NAME.c` with gcc (`-O0 -g -fno-omit-frame-pointer`: every call keeps
/// its frame, and the kernel's user-stack walk follows frame pointers) into a fresh directory of
/// its own; `None`, saying why, when gcc is missing.
pub fn c_binary(name: &str) -> Option<PathBuf> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/programs/{name}.c"));
    let dir = std::env::temp_dir().join(format!("connlife-c-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir for the C program");
    let out = dir.join(name);
    let st = match Command::new("gcc")
        .args(["-O0", "-g", "-fno-omit-frame-pointer", "-Wall", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
    {
        Ok(st) => st,
        Err(e) => {
            eprintln!("skipping the C program {name}: cannot run gcc ({e})");
            return None;
        }
    };
    assert!(st.success(), "gcc {} failed", src.display());
    Some(out)
}
