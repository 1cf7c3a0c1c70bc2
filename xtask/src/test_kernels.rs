//! Kernel matrix: `cargo xtask test-kernels`, and the last stage of `cargo xtask test`.
//!
//! connlife's privileged suite (the `kernel` integration test, `connlife/tests/kernel.rs`) and
//! `connlife check` run as root on each row of `xtask/kernels.toml`: natively for the entry without
//! a `package` (the host's own kernel, which cannot be booted here), and in a QEMU guest for each
//! Debian kernel package. The suite is built once on the host; the guest gets the test binary,
//! `connlife` and `connlife-workload` at their absolute host paths, because the test binary has
//! those paths compiled in (`env!("CARGO_BIN_EXE_...")`).
//!
//! Each kernel package is fetched once with `apt-get download` (from a private apt list for the
//! kernel's suite, e.g. `bullseye` or `bookworm-backports`, so the host's apt configuration is never
//! touched), unpacked with `dpkg-deb -x` into `target/kernels/<name>` and booted under QEMU. QEMU
//! uses TCG (`-accel tcg -cpu max`): development machines and CI are themselves VMs where /dev/kvm
//! exists but nested KVM fails, and TCG still boots a cloud kernel to userspace in a few seconds.
//! QEMU must be 8 or newer (7.2 corrupts 6.12 guests under TCG): an older host QEMU is replaced by
//! the one from bookworm-backports, fetched into the cache the same way.
//! There is no disk image: the xtask writes a small initramfs (cpio newc, gzip) holding a static
//! busybox with its applet links, the sock_diag modules of that kernel (decompressed on the host,
//! as busybox `insmod` cannot read .ko.xz/.ko.zst; connlife's start-up snapshot needs them), the
//! payload files with the shared libraries and ELF interpreter of each dynamic executable, and an
//! `/init` script. `/init` mounts proc, sysfs, devtmpfs, tracefs and bpffs, lifts
//! RLIMIT_MEMLOCK, brings `lo` up, loads the modules, runs the payload between markers under a
//! timeout, prints its exit status and powers off. The serial console is logged to
//! `target/kernels/<name>/serial.log`; the host parses the markers, the `feature NAME yes|no` lines
//! of `connlife check` and the test harness's `test result:` line, checks the features against the
//! row's `expect` list and renders a markdown table (`target/kernel-matrix.md`; `test-kernels` also
//! refreshes `docs/kernel-matrix.md` when every row could be measured).

use anyhow::{anyhow, ensure, Context, Result};
use cargo_metadata::{Message, TargetKind};
use serde::Deserialize;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use walkdir::WalkDir;

use crate::setup::file_name;

const MIRROR: &str = "http://deb.debian.org/debian";
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// Modules loaded in the guest, in this order, when the kernel builds them as modules.
const GUEST_MODULES: &[&str] = &["inet_diag", "tcp_diag"];
const QEMU: &str = "-accel tcg -cpu max -m 1024 -smp 2 -nographic -no-reboot -nic none";
const APPEND: &str = "console=ttyS0 panic=-1 quiet";
const QEMU_SUITE: &str = "bookworm-backports";
const BEGIN: &str = "@@CONNLIFE-BEGIN@@";
const END: &str = "@@CONNLIFE-END rc=";
const UNAME: &str = "@@CONNLIFE-UNAME ";
/// Whole guest run, boot to power-off. Measured under TCG on 2 shared cores: 11-20 s a kernel;
/// this leaves room for one test to wait out its 60 s PATIENCE and still report.
const GUEST_TIMEOUT: Duration = Duration::from_secs(150);
/// Feature columns always shown; any other feature gets a column when some row lacks it.
const COLUMNS: &[&str] = &[
    "inet_sock_set_state",
    "sock_send_length",
    "sock_recv_length",
    "use_counting",
    "exit_group_dead",
    "btf",
];
/// Lines of a failed row's output repeated under the table when no test panicked.
const TAIL: usize = 20;

/// One row of the matrix: a `[[kernel]]` table of xtask/kernels.toml.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelSpec {
    pub name: String,
    /// Exact Debian package name, or a glob (`*`) resolved to the highest matching version.
    /// Empty: the host's own kernel, measured natively.
    #[serde(default)]
    pub package: String,
    /// Debian suite to fetch from (private apt list); `None` uses the host's apt sources.
    pub suite: Option<String>,
    /// Features that must be reported as `yes`; a leading `!` means it must report `no`.
    #[serde(default)]
    pub expect: Vec<String>,
}

/// xtask/kernels.toml.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KernelList {
    #[serde(default)]
    kernel: Vec<KernelSpec>,
}

impl KernelSpec {
    fn is_host(&self) -> bool {
        self.package.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct KernelResult {
    pub name: String,
    /// `uname -r` of the kernel.
    pub version: String,
    pub passed: bool,
    pub summary: String,
    /// `feature NAME yes|no` lines in printed order (NAME is the part after the last `/`).
    pub features: Vec<(String, bool)>,
    /// Tests the suite passed and failed (its `test result:` lines).
    pub tests: (u64, u64),
    /// Wall time of the row (for a guest: boot to power-off).
    pub secs: f64,
    /// What the row printed (for a guest: between the markers).
    pub output: String,
}

/// The privileged suite as built on the host, as each row runs it: the `kernel` integration test
/// binary, `connlife` and `connlife-workload` (`files`, at their host paths in the guest too), and
/// the shell script that runs them (`command`).
pub struct Suite {
    pub files: Vec<PathBuf>,
    pub command: String,
}

/// Runs the matrix (`only` these rows when not empty): builds the suite, measures every row,
/// prints and writes the table (`write_docs`: docs/kernel-matrix.md and the README's table too,
/// after a full run where every row was measured), and fails when any row failed (a kernel
/// that cannot be fetched is a failed row too).
pub fn matrix(root: &Path, only: &[String], write_docs: bool) -> Result<()> {
    let started = Instant::now();
    let list = load_list(&root.join("xtask/kernels.toml"))?;
    let unknown: Vec<&String> = only.iter().filter(|n| !list.iter().any(|s| &s.name == *n)).collect();
    let names: Vec<&str> = list.iter().map(|s| s.name.as_str()).collect();
    ensure!(
        unknown.is_empty(),
        "no kernel named {unknown:?} in xtask/kernels.toml ({names:?})"
    );
    let rows = list.iter().filter(|s| only.is_empty() || only.contains(&s.name));
    ensure_host_tools()?;
    let suite = build_suite(root)?;
    let cache = root.join("target/kernels");
    let mut results = Vec::new();
    for spec in rows {
        let result = if spec.is_host() {
            println!("==> {}: connlife check and the kernel suite, natively", spec.name);
            run_host(&suite, spec)
        } else {
            let (package, limit) = (&spec.package, GUEST_TIMEOUT.as_secs());
            println!("==> {}: {package} under QEMU (TCG), at most {limit} s", spec.name);
            run_kernel(spec, &suite, &cache, GUEST_TIMEOUT)
        };
        let result = result.unwrap_or_else(|e| KernelResult {
            summary: format!("{e:#}"),
            ..result_from_output(&spec.name, "?", None, "", &[])
        });
        println!("{}", result.output.trim_end());
        let verdict = if result.passed { "pass" } else { "FAIL" };
        println!(
            "==> {}: {verdict} in {:.0} s: {}\n",
            spec.name, result.secs, result.summary
        );
        results.push(result);
    }
    let table = render_table(&results);
    let took = started.elapsed().as_secs_f64();
    println!("{table}\nkernel matrix: {} rows in {took:.0} s", results.len());
    fs::write(root.join("target/kernel-matrix.md"), &table)?;
    let failed: Vec<&str> = results.iter().filter(|r| !r.passed).map(|r| r.name.as_str()).collect();
    // A row that never ran (download, QEMU or boot failure) has no uname: not worth documenting.
    let measured = results.iter().all(|r| r.version != "?");
    if write_docs && only.is_empty() && measured {
        fs::write(root.join("docs/kernel-matrix.md"), render_doc(&table, took))?;
        let readme = root.join("README.md");
        let text = fs::read_to_string(&readme)?;
        fs::write(&readme, with_table(&text, &table))?;
        println!("wrote target/kernel-matrix.md, docs/kernel-matrix.md and the README's table");
    } else if write_docs {
        println!("wrote target/kernel-matrix.md; docs/kernel-matrix.md left as it was (not a full run)");
    }
    ensure!(
        failed.is_empty(),
        "kernel matrix: {} failed (the output above; guest serial logs in target/kernels/<name>/serial.log)",
        failed.join(", ")
    );
    Ok(())
}

/// Builds (or finds fresh) the `kernel` test binary and the two binaries it runs. The script
/// runs `connlife check` (its `feature` lines feed the table), then the suite; its exit status
/// is the suite's, or 1 when only `connlife check` failed.
pub fn build_suite(root: &Path) -> Result<Suite> {
    let args = ["test", "--release", "-p", "connlife", "--test", "kernel", "--no-run"];
    println!("$ cargo {}", args.join(" "));
    // Diagnostics rendered to stderr, the artifacts as JSON on stdout.
    let json = "--message-format=json-render-diagnostics";
    let cargo = duct::cmd("cargo", args.iter().chain(&[json])).dir(root);
    let out = cargo.stdout_capture().run()?;
    let exe = |kind, name| executable(&out.stdout, kind, name);
    let tests = exe(TargetKind::Test, "kernel")?;
    let connlife = exe(TargetKind::Bin, "connlife")?;
    let workload = exe(TargetKind::Bin, "connlife-workload")?;
    let (c, t) = (connlife.display(), tests.display());
    let command = format!(
        r#"
"{c}" check; check=$?
echo
"{t}" --test-threads=1; rc=$?
if [ $check != 0 ]; then echo "connlife check exited with status $check"; [ $rc = 0 ] && rc=1; fi
exit $rc
"#
    );
    let files = vec![tests, connlife, workload];
    Ok(Suite { files, command })
}

/// The executable cargo's JSON messages (`--message-format=json`) report for target `name`.
fn executable(messages: &[u8], kind: TargetKind, name: &str) -> Result<PathBuf> {
    let found = Message::parse_stream(messages).find_map(|m| match m {
        Ok(Message::CompilerArtifact(a)) if a.target.kind == [kind.clone()] && a.target.name == name => a.executable,
        _ => None,
    });
    let found = found.map(PathBuf::from);
    found.with_context(|| format!("cargo did not report the {kind} executable `{name}`"))
}

/// The host row: the suite's script, natively (needs root).
pub fn run_host(suite: &Suite, spec: &KernelSpec) -> Result<KernelResult> {
    let started = Instant::now();
    let version = fs::read_to_string("/proc/sys/kernel/osrelease").context("reading the host's uname -r")?;
    // stderr to stdout: one pipe keeps the harness's lines in order.
    let script = duct::cmd!("sh", "-c", &suite.command).stdin_null().stderr_to_stdout();
    let out = script.stdout_capture().unchecked().run()?;
    let output = String::from_utf8_lossy(&out.stdout);
    let mut result = result_from_output(&spec.name, version.trim(), out.status.code(), &output, &spec.expect);
    result.secs = started.elapsed().as_secs_f64();
    Ok(result)
}

/// Reads xtask/kernels.toml.
pub fn load_list(path: &Path) -> Result<Vec<KernelSpec>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_list(&text, &path.display().to_string())
}

/// Parses the kernel list; an error is one line, `<where>:<line>: <what>`.
fn parse_list(text: &str, at: &str) -> Result<Vec<KernelSpec>> {
    let list: KernelList = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(0, |s| text[..s.start].matches('\n').count() + 1);
        anyhow!("{at}:{line}: {}", e.message())
    })?;
    let specs = list.kernel;
    ensure!(
        !specs.iter().any(|s| s.name.is_empty()),
        "{at}: a kernel without a name"
    );
    let hosts = specs.iter().filter(|s| s.is_host()).count();
    ensure!(hosts <= 1, "{at}: more than one entry without a package (the host)");
    Ok(specs)
}

/// Install what the VM needs, idempotent and quiet when present.
pub fn ensure_host_tools() -> Result<()> {
    // qemu-system-x86 also brings the libraries of the backports QEMU (see qemu_command);
    // xz-utils/zstd decompress modules.
    let missing = crate::setup::missing_packages(&["qemu-system-x86", "busybox-static", "cpio", "xz-utils", "zstd"])?;
    if !missing.is_empty() {
        eprintln!("test-kernels: installing {}", missing.join(" "));
        crate::setup::apt_install(&missing)?;
    }
    Ok(())
}

/// Downloads and unpacks `packages` (the first may be a glob) from `suite` into `dir/root`
/// unless `dir` is stamped with `key` already.
fn fetch(suite: Option<&str>, cache: &Path, dir: &Path, packages: &[&str], key: &str) -> Result<()> {
    let stamp = fs::read_to_string(dir.join("fetched"));
    if stamp.is_ok_and(|s| s.lines().next() == Some(key)) {
        return Ok(());
    }
    if let Some(suite) = suite {
        // A private apt list (under `cache/apt/<suite>`), so the host's is never touched.
        let apt_dir = cache.join("apt").join(suite);
        fs::create_dir_all(apt_dir.join("lists/partial"))?;
        fs::create_dir_all(apt_dir.join("cache"))?;
        let line = format!("deb [signed-by={KEYRING}] {MIRROR} {suite} main\n");
        fs::write(apt_dir.join("sources.list"), line)?;
        apt(Some(suite), cache, "apt-get", &["-qq", "update"]).run()?;
    }
    let mut packages: Vec<String> = packages.iter().map(|p| p.to_string()).collect();
    packages[0] = resolve_package(suite, cache, &packages[0])?;
    eprintln!("test-kernels: {}: downloading {}", file_name(dir), packages.join(" "));
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir)?;
    let download = ["-q", "download"]
        .into_iter()
        .chain(packages.iter().map(String::as_str));
    apt(suite, cache, "apt-get", &download.collect::<Vec<_>>())
        .dir(dir)
        .run()?;
    for deb in fs::read_dir(dir)?.flatten().map(|e| e.path()) {
        if deb.extension().is_some_and(|e| e == "deb") {
            duct::cmd!("dpkg-deb", "-x", &deb, dir.join("root")).run()?;
            fs::remove_file(&deb)?;
        }
    }
    fs::write(dir.join("fetched"), format!("{key}\n{}\n", packages.join(" ")))?;
    Ok(())
}

/// Downloads and extracts the kernel package into `cache/<name>` (reused when present).
/// Returns (vmlinuz path, modules dir `.../lib/modules/<version>`).
pub fn fetch_kernel(spec: &KernelSpec, cache: &Path) -> Result<(PathBuf, PathBuf)> {
    let (dir, suite) = (cache.join(&spec.name), spec.suite.as_deref());
    let key = format!("{}|{}", suite.unwrap_or("host"), spec.package);
    let from = format!(
        "{} from {MIRROR} {}",
        spec.package,
        suite.unwrap_or("(host apt sources)")
    );
    let fetched = fetch(suite, cache, &dir, &[&spec.package], &key);
    fetched.with_context(|| format!("could not download the kernel {from} (network?)"))?;
    let root = dir.join("root");
    let vmlinuz = only_file(&root.join("boot"), |n| n.starts_with("vmlinuz-"))?;
    let bases = [root.join("lib/modules"), root.join("usr/lib/modules")];
    let base = bases.iter().find(|d| d.is_dir());
    let base = base.context("no lib/modules in the kernel package")?;
    let modules = fs::read_dir(base)?.next().context("empty lib/modules")??;
    Ok((vmlinuz, modules.path()))
}

/// The QEMU to boot with (program and first arguments). Debian 12's QEMU 7.2 corrupts 6.12
/// guests under TCG (oopses in kmem_cache_alloc in about a third of the boots) while 10.0 does
/// not, so a host QEMU older than 8 is replaced by the one from bookworm-backports, unpacked into
/// `cache/qemu` like the kernels (its shared libraries are those the host's qemu-system-x86
/// already pulled in).
fn qemu_command(cache: &Path) -> Result<(PathBuf, Vec<OsString>)> {
    let host = duct::cmd!("qemu-system-x86_64", "--version").read()?;
    let version = host.split("version ").nth(1).unwrap_or("");
    if version.split('.').next().and_then(|m| m.parse().ok()) >= Some(8) {
        return Ok(("qemu-system-x86_64".into(), Vec::new()));
    }
    let (dir, key) = (cache.join("qemu"), "backports-qemu");
    if !dir.join("fetched").is_file() {
        eprintln!("test-kernels: host QEMU {version}: using the one from {QEMU_SUITE}");
    }
    let debs = ["qemu-system-x86", "qemu-system-data", "seabios"];
    let fetched = fetch(Some(QEMU_SUITE), cache, &dir, &debs, key);
    fetched.with_context(|| format!("could not download QEMU from {MIRROR} {QEMU_SUITE} (network?)"))?;
    let root = dir.join("root/usr");
    let bin = root.join("bin/qemu-system-x86_64");
    let ldd = duct::cmd!("ldd", &bin).read()?;
    let missing: Vec<&str> = ldd.lines().filter(|l| l.contains("not found")).collect();
    ensure!(missing.is_empty(), "{}: missing {missing:?}", bin.display());
    let (data, bios) = (root.join("share/qemu"), root.join("share/seabios"));
    // -audio none: the host's (older) audio modules would not load.
    let args = [
        "-L".into(),
        data.into(),
        "-L".into(),
        bios.into(),
        "-audio".into(),
        "none".into(),
    ];
    Ok((bin, args.into()))
}

/// Boots `spec` with the suite and judges what the guest printed. Guest failures (exit status,
/// feature mismatch, timeout) give `passed: false`; host-side problems (a kernel that cannot be
/// downloaded, QEMU missing) are errors.
pub fn run_kernel(spec: &KernelSpec, suite: &Suite, cache: &Path, timeout: Duration) -> Result<KernelResult> {
    let (vmlinuz, modules) = fetch_kernel(spec, cache)?;
    let dir = cache.join(&spec.name);
    let guest_secs = timeout.as_secs().saturating_sub(20).max(10);
    let initrd = build_initramfs(&dir, &modules, suite, guest_secs)?;
    let log_path = dir.join("serial.log");
    let started = Instant::now();
    let (qemu, mut args) = qemu_command(cache)?;
    args.extend(QEMU.split(' ').map(OsString::from));
    args.extend(["-kernel".into(), vmlinuz.into(), "-initrd".into(), initrd.into()]);
    args.extend(["-append", APPEND].map(OsString::from));
    let qemu = duct::cmd(qemu, args)
        .stdin_null()
        .stderr_to_stdout()
        .stdout_path(&log_path);
    let child = qemu.unchecked().start().context("starting qemu-system-x86_64")?;
    let timed_out = child.wait_timeout(timeout)?.is_none();
    if timed_out {
        child.kill()?;
        child.wait()?;
    }
    let secs = started.elapsed().as_secs_f64();
    let log = String::from_utf8_lossy(&fs::read(&log_path)?).replace('\r', "");
    let version = log.lines().find_map(|l| Some(l.split_once(UNAME)?.1.trim()));
    let status = log
        .split_once(END)
        .and_then(|(_, r)| r.split("@@").next()?.parse().ok());
    let output = match log.split_once(BEGIN) {
        Some((_, rest)) => rest.split(END).next().unwrap_or(rest).trim_start().into(),
        None => {
            let lines: Vec<&str> = log.lines().collect();
            lines[lines.len().saturating_sub(30)..].join("\n")
        }
    };
    let version = version.unwrap_or("?");
    let mut result = result_from_output(&spec.name, version, status, &output, &spec.expect);
    if timed_out {
        result.passed = false;
        result.summary = format!("timeout after {}s; {}", timeout.as_secs(), result.summary);
    }
    if !result.passed {
        let root = cache.parent().and_then(Path::parent).unwrap_or(Path::new("/"));
        let shown = log_path.strip_prefix(root).unwrap_or(&log_path);
        result.summary += &format!(" (serial log {})", shown.display());
    }
    result.secs = secs;
    Ok(result)
}

/// Judges one run from its output: exit status 0 and every `expect` entry met.
/// Also what the host row uses, measured natively.
pub fn result_from_output(
    name: &str,
    version: &str,
    status: Option<i32>,
    output: &str,
    expect: &[String],
) -> KernelResult {
    let features: Vec<(String, bool)> = output
        .lines()
        .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            ["feature", f, v @ ("yes" | "no")] => Some((f.rsplit('/').next()?.into(), v == "yes")),
            _ => None,
        })
        .collect();
    let mut counts = crate::Counts::default();
    output.lines().for_each(|l| crate::add_counts(&mut counts, l));
    let mut problems = Vec::new();
    if counts.failed > 0 {
        let run = counts.passed + counts.failed;
        problems.push(format!("{} of {run} tests failed", counts.failed));
    }
    match status {
        Some(0) => {}
        Some(143) => problems.push("payload timed out in the guest (status 143)".into()),
        Some(rc) => problems.push(format!("exit status {rc}")),
        None => problems.push("no exit status (guest did not finish)".to_string()),
    }
    for e in expect {
        let (want, f) = match e.strip_prefix('!') {
            Some(f) => (false, f),
            None => (true, e.as_str()),
        };
        match features.iter().find(|(n, _)| n == f) {
            Some((_, got)) if *got == want => {}
            Some(_) => problems.push(format!("{f}: expected {}", yes_no(want))),
            None => problems.push(format!("{f}: not reported")),
        }
    }
    let passed = problems.is_empty();
    let summary = if passed { "ok".into() } else { problems.join("; ") };
    let (name, version, output) = (name.into(), version.into(), output.into());
    KernelResult {
        name,
        version,
        passed,
        summary,
        features,
        tests: (counts.passed, counts.failed),
        secs: 0.0,
        output,
    }
}

/// Markdown table: kernel, uname -r, suite verdict with tests passed/run, time, then the
/// COLUMNS features and any other feature some row lacks; the features every row has are named
/// below it, and each failure is listed with its reasons and the last lines it printed.
pub fn render_table(results: &[KernelResult]) -> String {
    let all = results.iter().flat_map(|r| &r.features);
    let mut cols: Vec<&str> = COLUMNS.to_vec();
    let mut everywhere: Vec<&str> = Vec::new();
    for (f, _) in all.clone() {
        let lacking = all.clone().any(|(g, yes)| g == f && !yes);
        let list = if lacking { &mut cols } else { &mut everywhere };
        if !COLUMNS.contains(&f.as_str()) && !list.contains(&f.as_str()) {
            list.push(f);
        }
    }
    let head = ["kernel", "uname -r", "suite", "time"].iter().chain(&cols);
    let head: Vec<&str> = head.copied().collect();
    let mut out = format!("| {} |\n|{}\n", head.join(" | "), "---|".repeat(head.len()));
    for r in results {
        let value = |c: &&str| r.features.iter().find(|(f, _)| f == c).map(|f| yes_no(f.1));
        let (passed, failed) = r.tests;
        let mut suite = if r.passed { "pass" } else { "FAIL" }.to_string();
        if passed + failed > 0 {
            suite += &format!(" ({passed}/{})", passed + failed);
        }
        let time = format!("{:.0} s", r.secs);
        let mut cells = vec![r.name.as_str(), r.version.as_str(), &suite, &time];
        cells.extend(cols.iter().map(|c| value(c).unwrap_or("?")));
        out += &format!("| {} |\n", cells.join(" | "));
    }
    if !everywhere.is_empty() {
        out += &format!(
            "\nOther features, `yes` wherever reported: {}.\n",
            everywhere.join(", ")
        );
    }
    for r in results.iter().filter(|r| !r.passed) {
        let why = failure_lines(&r.output).join("\n    ");
        out += &format!("\n- {} FAILED: {}\n\n    {why}\n", r.name, r.summary);
    }
    out
}

/// Why a row failed, from what it printed: each failed test's name and panic message (the
/// harness's `---- NAME stdout ----`, `thread ... panicked at FILE:LINE:` and the next line), or
/// the last TAIL lines when no test panicked (boot failure, connlife check failure, timeout).
fn failure_lines(output: &str) -> Vec<&str> {
    let lines: Vec<&str> = output.lines().collect();
    let mut why = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("---- ") && line.ends_with(" stdout ----") {
            why.push(*line);
        } else if line.contains("' panicked at ") || line.contains("' (") && line.contains(") panicked at ") {
            why.extend(lines[i..].iter().take(2));
        }
    }
    if why.is_empty() {
        why = lines[lines.len().saturating_sub(TAIL)..].to_vec();
    }
    why
}

const TABLE_BEGIN: &str = "<!-- kernel-matrix:begin (written by cargo xtask test-kernels) -->";
const TABLE_END: &str = "<!-- kernel-matrix:end -->";

/// The README with the text between the table markers replaced (unchanged without markers).
fn with_table(readme: &str, table: &str) -> String {
    match (readme.find(TABLE_BEGIN), readme.find(TABLE_END)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{TABLE_BEGIN}\n{}\n{}", &readme[..b], table.trim_end(), &readme[e..])
        }
        _ => readme.to_string(),
    }
}

/// docs/kernel-matrix.md: the table with when and how it was measured.
fn render_doc(table: &str, secs: f64) -> String {
    let date = time::OffsetDateTime::now_utc().date(); // Display: YYYY-MM-DD
    format!(
        "# Kernel matrix

Measured by `cargo xtask test-kernels` on {date} (the whole matrix took {secs:.0} s). On every row, as
root, `connlife check` printed the features and connlife's privileged suite (`connlife/tests/kernel.rs`,
`--test-threads=1`) ran against the real eBPF programs: natively for `host`, and for each Debian kernel of
`xtask/kernels.toml` in a QEMU guest (TCG, 2 vCPUs, 1 GiB, busybox initramfs) booted from that kernel
package. `cargo xtask test` runs the same matrix after the host's own tests and fails when a row fails.

- suite: pass or FAIL, with the tests passed out of those run; each FAIL is explained under the table
  with the last lines the row printed. time: the whole row; a guest's includes booting and powering
  off under emulation.
- `use_counting` (bytes, last activity and exchanges counted in the kernel) needs the
  `sock_send_length`/`sock_recv_length` tracepoints (Linux 6.3). Without them connlife reports bytes and
  exchanges as null, and the suite asserts that degradation instead.
- `exit_group_dead` is the `group_dead` field of `sched_process_exit` (Linux 6.16). Without it connlife
  takes the exit of the group leader (pid == tgid) as the process's end.

{table}"
    )
}

fn build_initramfs(dir: &Path, mods: &Path, suite: &Suite, secs: u64) -> Result<PathBuf> {
    let stage = dir.join("initramfs");
    let _ = fs::remove_dir_all(&stage);
    for d in "bin dev proc sys tmp run etc root lib/modules".split(' ') {
        fs::create_dir_all(stage.join(d))?;
    }
    add_file(&stage, Path::new("/bin/busybox"), "/bin/busybox")?;
    let list = duct::cmd!("/bin/busybox", "--list").read()?;
    for applet in list.lines().filter(|a| *a != "busybox") {
        std::os::unix::fs::symlink("busybox", stage.join("bin").join(applet))?;
    }
    for m in GUEST_MODULES {
        let is_module = |n: &str| n.strip_prefix(m).is_some_and(|r| r.starts_with(".ko"));
        let files = WalkDir::new(mods)
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_file());
        let Some(src) = files.map(|e| e.into_path()).find(|p| is_module(&file_name(p))) else {
            continue; // built in
        };
        let dest = stage.join(format!("lib/modules/{m}.ko"));
        let tool = match src.extension().and_then(|e| e.to_str()) {
            Some("xz") => "xz",
            Some("zst") => "zstd",
            Some("gz") => "gzip",
            _ => {
                fs::copy(&src, &dest)?;
                continue;
            }
        };
        duct::cmd!(tool, "-dc", &src).stdout_path(&dest).run()?;
    }
    for host in &suite.files {
        let guest = &host.to_string_lossy();
        let _ = fs::remove_file(stage.join(guest.trim_start_matches('/'))); // an applet link
        add_file(&stage, host, guest)?;
    }
    let hosts = "127.0.0.1 localhost\n::1 localhost\n";
    fs::write(stage.join("etc/hosts"), hosts)?;
    fs::write(stage.join("payload.sh"), &suite.command)?;
    let modules = GUEST_MODULES.join(" ");
    let init = format!(
        r#"#!/bin/busybox sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
mount -t devtmpfs devtmpfs /dev
exec 0</dev/console 1>/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
# No tmpfs on /tmp: the payload may live under /tmp (a clone there), and the
# initramfs root is already writable memory.
mount -t tracefs tracefs /sys/kernel/tracing || echo "init: no tracefs"
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
grep -q bpf /proc/filesystems && mount -t bpf bpf /sys/fs/bpf
ulimit -l unlimited
ip link set lo up
for m in {modules}; do [ -f /lib/modules/$m.ko ] && insmod /lib/modules/$m.ko; done
echo "{UNAME}$(uname -r)"
echo "{BEGIN}"
timeout {secs} sh /payload.sh
echo "{END}$?@@"
poweroff -f
"#
    );
    fs::write(stage.join("init"), init)?;
    fs::set_permissions(stage.join("init"), fs::Permissions::from_mode(0o755))?;
    let out = dir.join("initramfs.cpio.gz");
    let cpio = "find . -print0 | cpio --null -o -H newc -R 0:0 --quiet | gzip -1";
    duct::cmd!("sh", "-c", cpio).dir(&stage).stdout_path(&out).run()?;
    Ok(out)
}

/// Copies `host` to `guest` under `stage`; for a dynamic ELF also its libraries and interpreter.
fn add_file(stage: &Path, host: &Path, guest: &str) -> Result<()> {
    let dest = stage.join(guest.trim_start_matches('/'));
    if dest.exists() {
        return Ok(());
    }
    fs::create_dir_all(dest.parent().context("guest path")?)?;
    fs::copy(host, &dest).with_context(|| format!("copying {} to the guest", host.display()))?;
    if !fs::read(host)?.starts_with(b"\x7fELF") {
        return Ok(());
    }
    // ldd fails for a static binary: no output.
    let ldd = duct::cmd!("ldd", host).stderr_null().unchecked().read()?;
    for line in ldd.lines() {
        ensure!(!line.contains("not found"), "{}: {line}", host.display());
        let lib = line.split("=>").last().and_then(|s| s.split_whitespace().next());
        if let Some(lib) = lib.filter(|p| p.starts_with('/')) {
            add_file(stage, Path::new(lib), lib)?;
        }
    }
    Ok(())
}

/// Resolves a glob to the matching package with the highest version numbers.
fn resolve_package(suite: Option<&str>, cache: &Path, pattern: &str) -> Result<String> {
    if !pattern.contains('*') {
        return Ok(pattern.to_string());
    }
    let regex = format!("^{}$", pattern.replace('.', "\\.").replace('+', "\\+"));
    let regex = regex.replace('*', ".*");
    let text = apt(suite, cache, "apt-cache", &["search", "--names-only", &regex]).read()?;
    let numbers = |n: &&str| -> Vec<u64> {
        let parts = n.split(|c: char| !c.is_ascii_digit());
        parts.filter_map(|d| d.parse().ok()).collect()
    };
    let names = text.lines().filter_map(|l| l.split(" - ").next());
    let best = names.max_by_key(numbers).map(str::to_string);
    best.with_context(|| format!("no package matches {pattern} (apt-get update?)"))
}

/// `apt-get`/`apt-cache ARGS`, with a private sources list and state when a suite is given.
fn apt(suite: Option<&str>, cache: &Path, tool: &str, args: &[&str]) -> duct::Expression {
    let mut opts = vec!["APT::Sandbox::User=root".to_string()];
    if let Some(suite) = suite {
        let dir = cache.join("apt").join(suite);
        let dir = fs::canonicalize(&dir).unwrap_or(dir); // apt-get download runs elsewhere
        opts.push(format!("Dir::Etc::SourceList={}/sources.list", dir.display()));
        opts.push(format!("Dir::State::Lists={}/lists", dir.display()));
        opts.push(format!("Dir::Cache={}/cache", dir.display()));
        opts.extend(
            [
                "Dir::Etc::SourceParts=/nonexistent",
                "APT::Architectures=amd64",
                "Acquire::Languages=none",
            ]
            .map(String::from),
        );
    }
    let opts = opts.into_iter().flat_map(|o| ["-o".to_string(), o]);
    duct::cmd(tool, opts.chain(args.iter().map(|a| a.to_string())))
}

fn only_file(dir: &Path, pred: impl Fn(&str) -> bool) -> Result<PathBuf> {
    let mut paths = fs::read_dir(dir)?.flatten().map(|e| e.path());
    let found = paths.find(|p| p.file_name().is_some_and(|n| pred(&n.to_string_lossy())));
    found.with_context(|| format!("expected file not found in {}", dir.display()))
}

fn yes_no(v: bool) -> &'static str {
    if v {
        "yes"
    } else {
        "no"
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn readme_table_is_replaced_between_markers_only() {
        let readme = format!("a\n{TABLE_BEGIN}\nold\n{TABLE_END}\nb\n");
        assert_eq!(
            with_table(&readme, "| new |\n"),
            format!("a\n{TABLE_BEGIN}\n| new |\n{TABLE_END}\nb\n")
        );
        assert_eq!(with_table("no markers", "| new |"), "no markers");
    }

    use super::*;

    const OUTPUT: &str = "kernel 5.10.0-32-cloud-amd64
feature btf yes
feature inet_sock_set_state yes
feature sys_enter_close yes
feature sock_send_length no
feature use_counting no

running 3 tests
test a ... ok
test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 40.1s
";

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_committed_list_parses_with_one_host_row() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels.toml");
        let list = load_list(&path).unwrap();
        assert_eq!(list.iter().filter(|s| s.is_host()).count(), 1);
        assert!(list.iter().all(|s| !s.expect.is_empty()), "{list:?}");
    }

    #[test]
    fn kernel_list_errors_name_the_line() {
        let spec = |text| parse_list(text, "k.toml");
        let list = spec(
            "[[kernel]]\nname = \"host\"\n\n[[kernel]]\nname = \"d\"\npackage = \"linux-*\"\nsuite = \"bookworm\"\n",
        );
        let list = list.unwrap();
        assert_eq!((list[0].is_host(), list[1].suite.as_deref()), (true, Some("bookworm")));
        let err = spec("[[kernel]]\nname = \"a\"\nflavour = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("k.toml:3: unknown field `flavour`"), "{err}");
        assert!(!err.contains('\n'), "{err}");
        let err = spec("[[kernel]]\nname = \"a\"\n[[kernel]]\nname = \"b\"\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "k.toml: more than one entry without a package (the host)"
        );
        assert!(spec("[[kernel]]\npackage = \"p\"\n").is_err());
        assert_eq!(spec("# no rows\n").unwrap(), []);
    }

    #[test]
    fn cargo_json_gives_the_executables() {
        let line = |kind: &str, name: &str, exe: &str| {
            format!(
                r#"{{"reason":"compiler-artifact","package_id":"path+file:///r/c#0.1.0","manifest_path":"/r/c/Cargo.toml","target":{{"kind":["{kind}"],"crate_types":["bin"],"name":"{name}","src_path":"/r/c/x.rs","edition":"2021","doc":true,"doctest":false,"test":true}},"profile":{{"opt_level":"3","debuginfo":0,"debug_assertions":false,"overflow_checks":false,"test":false}},"features":[],"filenames":["{exe}"],"executable":{exe:?},"fresh":true}}"#
            )
        };
        let out = [
            line("bin", "connlife", "/r/t/connlife"),
            line("test", "kernel", "/r/t/d/kernel-1"),
        ];
        let out = format!(
            "{}\n{}\n{{\"reason\":\"build-finished\",\"success\":true}}\n",
            out[0], out[1]
        );
        let exe = |kind, name| executable(out.as_bytes(), kind, name);
        assert_eq!(exe(TargetKind::Test, "kernel").unwrap(), Path::new("/r/t/d/kernel-1"));
        assert_eq!(exe(TargetKind::Bin, "connlife").unwrap(), Path::new("/r/t/connlife"));
        let err = exe(TargetKind::Bin, "kernel").unwrap_err();
        assert_eq!(err.to_string(), "cargo did not report the bin executable `kernel`");
    }

    #[test]
    fn a_run_passes_on_status_zero_and_every_expectation() {
        let expect = strings(&["btf", "!use_counting", "inet_sock_set_state"]);
        let r = result_from_output("k", "5.10", Some(0), OUTPUT, &expect);
        assert!(r.passed, "{}", r.summary);
        assert_eq!(r.tests, (3, 0));
        assert_eq!(r.features[0], ("btf".to_string(), true));
    }

    #[test]
    fn a_run_fails_on_failed_tests_status_or_a_missing_feature() {
        let failed = OUTPUT.replace("ok. 3 passed; 0 failed", "FAILED. 2 passed; 1 failed");
        let expect = strings(&["use_counting", "exit_group_dead"]);
        let r = result_from_output("k", "5.10", Some(101), &failed, &expect);
        assert!(!r.passed);
        let want = "1 of 3 tests failed; exit status 101; use_counting: expected yes; exit_group_dead: not reported";
        assert_eq!(r.summary, want);
        let r = result_from_output("k", "5.10", None, "", &[]);
        assert_eq!(r.summary, "no exit status (guest did not finish)");
    }

    #[test]
    fn the_table_shows_fixed_columns_and_names_the_features_every_row_has() {
        let ok = result_from_output("old", "5.10", Some(0), OUTPUT, &[]);
        let bad = result_from_output("new", "6.12", Some(101), "feature sys_enter_close no\nboom", &[]);
        let table = render_table(&[ok, bad]);
        let mut lines = table.lines();
        let head = "| kernel | uname -r | suite | time | inet_sock_set_state | sock_send_length | sock_recv_length \
                    | use_counting | exit_group_dead | btf | sys_enter_close |";
        assert_eq!(lines.next(), Some(head));
        lines.next();
        assert_eq!(
            lines.next(),
            Some("| old | 5.10 | pass (3/3) | 0 s | yes | no | ? | no | ? | yes | yes |")
        );
        assert_eq!(
            lines.next(),
            Some("| new | 6.12 | FAIL | 0 s | ? | ? | ? | ? | ? | ? | no |")
        );
        assert!(table.contains("- new FAILED: exit status 101\n\n    feature sys_enter_close no\n    boom\n"));
    }

    #[test]
    fn failures_are_explained_by_their_panic_messages() {
        let output = "running 2 tests
test a ... ok
test b ... FAILED

failures:

---- b stdout ----
[connlife] tracing pids [1]

thread 'b' (113) panicked at connlife/tests/kernel.rs:130:9:
{\"path\":[]}
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace


failures:
    b
";
        let want = [
            "---- b stdout ----",
            "thread 'b' (113) panicked at connlife/tests/kernel.rs:130:9:",
            "{\"path\":[]}",
        ];
        assert_eq!(failure_lines(output), want);
    }
}
