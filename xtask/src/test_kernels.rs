//! Kernel matrix for `cargo xtask test-kernels`.
//!
//! Each kernel listed in `xtask/kernels.toml` is a Debian kernel package. It is fetched once with
//! `apt-get download` (from a private apt list for the kernel's suite, e.g. `bullseye` or
//! `bookworm-backports`, so the host's apt configuration is never touched), unpacked with
//! `dpkg-deb -x` into the cache directory and booted under QEMU. QEMU uses TCG
//! (`-accel tcg -cpu max`): development machines and CI are themselves VMs where /dev/kvm exists
//! but nested KVM fails, and TCG still boots a cloud kernel to userspace in a few seconds. QEMU
//! must be 8 or newer (7.2 corrupts 6.12 guests under TCG): an older host QEMU is replaced by the
//! one from bookworm-backports, fetched into the cache the same way.
//! There is no disk image: the xtask writes a small initramfs (cpio newc, gzip) holding a static
//! busybox with its applet links, the sock_diag modules of that kernel (decompressed on the host,
//! as busybox `insmod` cannot read .ko.xz/.ko.zst), the payload files with the shared libraries
//! and ELF interpreter of each dynamic executable, and an `/init` script. `/init` mounts proc,
//! sysfs, devtmpfs, tracefs and bpffs, brings `lo` up, loads the modules, runs the payload
//! command between markers under a timeout, prints its exit status and powers off. The serial
//! console is logged to `<cache>/<kernel>/serial.log`; the host parses the markers and the
//! `feature NAME yes|no` lines, checks them against the kernel's `expect` list and renders a
//! markdown table.

use anyhow::{bail, ensure, Context, Result};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

/// One kernel of the matrix.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KernelSpec {
    pub name: String,
    /// Exact Debian package name, or a glob (`*`) resolved to the highest matching version.
    pub package: String,
    /// Debian suite to fetch from (private apt list); `None` uses the host's apt sources.
    pub suite: Option<String>,
    /// Features the guest must report as `yes`; a leading `!` means it must report `no`.
    pub expect: Vec<String>,
}

/// What runs in the guest: host files copied in (host path, guest path), then a shell command.
pub struct GuestPayload {
    pub files: Vec<(PathBuf, String)>,
    pub command: String,
}

#[derive(Debug, Clone)]
pub struct KernelResult {
    pub name: String,
    /// `uname -r` in the guest.
    pub version: String,
    pub passed: bool,
    pub summary: String,
    /// `feature NAME yes|no` lines in printed order (NAME is the part after the last `/`).
    pub features: Vec<(String, bool)>,
    /// What the guest printed between the markers.
    pub output: String,
}

/// Parses the kernel list: `[[kernel]]` blocks of `key = "string"` or `key = ["a", "b"]` lines,
/// a subset of TOML (the `toml` crate could read the file unchanged).
pub fn load_list(path: &Path) -> Result<Vec<KernelSpec>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut specs: Vec<KernelSpec> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let at = format!("{}:{}", path.display(), i + 1);
        let line = raw.split(" #").next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        } else if line == "[[kernel]]" {
            specs.push(KernelSpec::default());
            continue;
        }
        let (key, value) = line.split_once('=').context(format!("{at}: no ="))?;
        let spec = specs.last_mut().context(format!("{at}: no [[kernel]]"))?;
        let string = |v: &str| match v.trim().strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            Some(s) if !s.contains('"') => Ok(s.to_string()),
            _ => Err(anyhow::anyhow!("{at}: expected a \"string\", got {v}")),
        };
        match key.trim() {
            "name" => spec.name = string(value)?,
            "package" => spec.package = string(value)?,
            "suite" => spec.suite = Some(string(value)?),
            "expect" => {
                let list = value.trim().strip_prefix('[');
                let list = list
                    .and_then(|v| v.strip_suffix(']'))
                    .context(format!("{at}: expect must be a one-line [list]"))?;
                let items = list.split(',').filter(|s| !s.trim().is_empty());
                spec.expect = items.map(string).collect::<Result<_>>()?;
            }
            other => bail!("{at}: unknown key {other}"),
        }
    }
    let bad = specs
        .iter()
        .find(|s| s.name.is_empty() || s.package.is_empty());
    ensure!(bad.is_none(), "{}: name or package missing", path.display());
    Ok(specs)
}

/// Install what the VM needs, idempotent and quiet when present.
pub fn ensure_host_tools() -> Result<()> {
    // qemu-system-x86 also brings the libraries of the backports QEMU (see qemu_command);
    // xz-utils/zstd decompress modules; iproute2 gives the stand-in payload `ss`.
    let wanted = "qemu-system-x86 busybox-static cpio xz-utils zstd iproute2".split(' ');
    let mut query = Command::new("dpkg-query");
    query.args(["-W", "-f=${Status} ${Package}\n"]);
    let have = query.args(wanted.clone()).output()?.stdout;
    let have = String::from_utf8_lossy(&have);
    let missing: Vec<&str> = wanted
        .filter(|p| !have.contains(&format!("install ok installed {p}\n")))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("test-kernels: installing {}", missing.join(" "));
    let mut install = Command::new("apt-get");
    install.args(["install", "-yq", "--no-install-recommends"]);
    install
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive");
    if !install.status()?.success() {
        run(Command::new("apt-get").args(["-q", "update"]))?;
        run(&mut install)?;
    }
    Ok(())
}

/// Download + extract the kernel package into `cache/<name>` (reused when present).
/// Returns (vmlinuz path, modules dir `.../lib/modules/<version>`).
pub fn fetch_kernel(spec: &KernelSpec, cache: &Path) -> Result<(PathBuf, PathBuf)> {
    let dir = cache.join(&spec.name);
    let root = dir.join("root");
    let suite = spec.suite.as_deref();
    let key = format!("{}|{}", suite.unwrap_or("host"), spec.package);
    if !is_fetched(&dir, &key) {
        apt_update(suite, cache)?;
        let package = resolve_package(suite, cache, &spec.package)?;
        eprintln!("test-kernels: {}: downloading {package}", spec.name);
        unpack_debs(suite, cache, &dir, &[&package], &key)?;
    }
    let vmlinuz = only_file(&root.join("boot"), |n| n.starts_with("vmlinuz-"))?;
    let bases = [root.join("lib/modules"), root.join("usr/lib/modules")];
    let base = bases.iter().find(|d| d.is_dir());
    let base = base.context("no lib/modules in the kernel package")?;
    let modules = fs::read_dir(base)?.next().context("empty lib/modules")??;
    Ok((vmlinuz, modules.path()))
}

/// The QEMU to boot with. Debian 12's QEMU 7.2 corrupts 6.12 guests under TCG (oopses in
/// kmem_cache_alloc in about a third of the boots) while 10.0 does not, so a host QEMU older
/// than 8 is replaced by the one from bookworm-backports, unpacked into `cache/qemu` like the
/// kernels (its shared libraries are those the host's qemu-system-x86 already pulled in).
fn qemu_command(cache: &Path) -> Result<Command> {
    let host = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()?;
    let host = String::from_utf8_lossy(&host.stdout).into_owned();
    let version = host.split("version ").nth(1).unwrap_or("");
    if version.split('.').next().and_then(|m| m.parse().ok()) >= Some(8) {
        return Ok(Command::new("qemu-system-x86_64"));
    }
    let (dir, suite, key) = (cache.join("qemu"), Some(QEMU_SUITE), "backports-qemu");
    if !is_fetched(&dir, key) {
        eprintln!("test-kernels: host QEMU {version}: using the one from {QEMU_SUITE}");
        apt_update(suite, cache)?;
        let debs = ["qemu-system-x86", "qemu-system-data", "seabios"];
        unpack_debs(suite, cache, &dir, &debs, key)?;
    }
    let root = dir.join("root/usr");
    let bin = root.join("bin/qemu-system-x86_64");
    let ldd = Command::new("ldd").arg(&bin).output()?.stdout;
    let ldd = String::from_utf8_lossy(&ldd);
    let missing: Vec<&str> = ldd.lines().filter(|l| l.contains("not found")).collect();
    ensure!(missing.is_empty(), "{}: missing {missing:?}", bin.display());
    let mut cmd = Command::new(bin);
    cmd.arg("-L").arg(root.join("share/qemu"));
    cmd.arg("-L").arg(root.join("share/seabios"));
    cmd.args(["-audio", "none"]); // the host's (older) audio modules would not load
    Ok(cmd)
}

/// Boots `spec` with `payload` and judges what the guest printed. Guest failures (exit status,
/// feature mismatch, timeout) give `passed: false`; only host-side problems are errors.
pub fn run_kernel(
    spec: &KernelSpec,
    payload: &GuestPayload,
    cache: &Path,
    timeout: Duration,
) -> Result<KernelResult> {
    let (vmlinuz, modules) = fetch_kernel(spec, cache)?;
    let dir = cache.join(&spec.name);
    let guest_secs = timeout.as_secs().saturating_sub(20).max(10);
    let initrd = build_initramfs(&dir, &modules, payload, guest_secs)?;
    let log_path = dir.join("serial.log");
    let log = fs::File::create(&log_path)?;
    let started = Instant::now();
    let mut qemu = qemu_command(cache)?;
    qemu.args(QEMU.split(' ')).arg("-kernel").arg(&vmlinuz);
    qemu.arg("-initrd").arg(&initrd).args(["-append", APPEND]);
    let out = log.try_clone()?;
    qemu.stdin(Stdio::null()).stdout(out).stderr(log);
    let mut child = qemu.spawn().context("starting qemu-system-x86_64")?;
    let timed_out = loop {
        if child.try_wait()?.is_some() {
            break false;
        } else if started.elapsed() > timeout {
            child.kill()?;
            child.wait()?;
            break true;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let secs = started.elapsed().as_secs_f64();
    let log = String::from_utf8_lossy(&fs::read(&log_path)?).replace('\r', "");
    let version = log
        .lines()
        .find_map(|l| Some(l.split_once(UNAME)?.1.trim()));
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
    result.summary += &format!(" ({secs:.1}s, log {})", log_path.display());
    Ok(result)
}

/// Judges one run from its output: exit status 0 and every `expect` entry met.
/// Also what the caller uses for the host row, measured natively.
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
    let mut problems = Vec::new();
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
    let summary = if passed {
        "ok".into()
    } else {
        problems.join("; ")
    };
    let (name, version, output) = (name.into(), version.into(), output.into());
    KernelResult {
        name,
        version,
        passed,
        summary,
        features,
        output,
    }
}

/// Markdown table: kernel, uname -r, pass/fail, one column per feature any run reported;
/// each failure is listed below it with its reasons and the last lines the guest printed.
pub fn render_table(results: &[KernelResult]) -> String {
    let mut cols = vec!["kernel", "uname -r", "result"];
    for (f, _) in results.iter().flat_map(|r| &r.features) {
        if !cols.contains(&f.as_str()) {
            cols.push(f);
        }
    }
    let mut out = format!("| {} |\n|{}\n", cols.join(" | "), "---|".repeat(cols.len()));
    for r in results {
        let value = |c: &&str| r.features.iter().find(|(f, _)| f == c).map(|f| yes_no(f.1));
        let verdict = if r.passed { "pass" } else { "FAIL" };
        let mut cells = vec![r.name.as_str(), r.version.as_str(), verdict];
        cells.extend(cols[3..].iter().map(|c| value(c).unwrap_or("?")));
        out += &format!("| {} |\n", cells.join(" | "));
    }
    for r in results.iter().filter(|r| !r.passed) {
        let lines: Vec<&str> = r.output.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n    ");
        out += &format!("\n- {} FAILED: {}\n    {tail}\n", r.name, r.summary);
    }
    out
}

/// Stand-in payload until `connlife check --json` and the privileged suite run in the guest:
/// reports tracepoints, BTF and bpffs, runs a dynamically linked host binary (`ss`, a sock_diag
/// client, so this also proves the modules loaded) and a loopback TCP round trip with nc.
pub fn probe_payload() -> GuestPayload {
    let command = r#"
for tp in sock/inet_sock_set_state sock/sock_send_length sock/sock_recv_length \
          syscalls/sys_enter_close sched/sched_process_exit; do
  [ -d /sys/kernel/tracing/events/$tp ] && echo "feature $tp yes" || echo "feature $tp no"
done
[ -f /sys/kernel/btf/vmlinux ] && echo "feature btf yes" || echo "feature btf no"
grep -q ' /sys/fs/bpf bpf' /proc/mounts && echo "feature bpffs yes" || echo "feature bpffs no"
nc -l -p 7777 > /tmp/got &
sleep 1
ss -tln | grep -q ':7777' && echo "feature sock_diag yes" || echo "feature sock_diag no"
cat /proc/net/tcp
echo ping | nc -w 2 127.0.0.1 7777
sleep 1
grep -q ping /tmp/got && echo "feature tcp_loopback yes" || echo "feature tcp_loopback no"
"#;
    let files = vec![(PathBuf::from("/usr/bin/ss"), "/usr/bin/ss".into())];
    GuestPayload {
        files,
        command: command.into(),
    }
}

fn build_initramfs(dir: &Path, mods: &Path, payload: &GuestPayload, secs: u64) -> Result<PathBuf> {
    let stage = dir.join("initramfs");
    let _ = fs::remove_dir_all(&stage);
    for d in "bin dev proc sys tmp run etc root lib/modules".split(' ') {
        fs::create_dir_all(stage.join(d))?;
    }
    add_file(&stage, Path::new("/bin/busybox"), "/bin/busybox")?;
    let list = Command::new("/bin/busybox").arg("--list").output()?;
    let list = String::from_utf8_lossy(&list.stdout);
    for applet in list.lines().filter(|a| *a != "busybox") {
        std::os::unix::fs::symlink("busybox", stage.join("bin").join(applet))?;
    }
    for m in GUEST_MODULES {
        let is_module = |n: &str| n.strip_prefix(m).is_some_and(|r| r.starts_with(".ko"));
        let Some(src) = find_file(mods, &is_module) else {
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
        let out = Command::new(tool).arg("-dc").arg(&src).output()?;
        ensure!(out.status.success(), "{tool} -dc {}", src.display());
        fs::write(&dest, out.stdout)?;
    }
    for (host, guest) in &payload.files {
        let _ = fs::remove_file(stage.join(guest.trim_start_matches('/'))); // an applet link
        add_file(&stage, host, guest)?;
    }
    let hosts = "127.0.0.1 localhost\n::1 localhost\n";
    fs::write(stage.join("etc/hosts"), hosts)?;
    fs::write(stage.join("payload.sh"), &payload.command)?;
    let modules = GUEST_MODULES.join(" ");
    let init = format!(
        r#"#!/bin/busybox sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
mount -t devtmpfs devtmpfs /dev
exec 0</dev/console 1>/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /tmp
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
    let mut sh = Command::new("sh");
    sh.args(["-c", cpio]).current_dir(&stage);
    run(sh.stdout(fs::File::create(&out)?))?;
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
    let ldd = Command::new("ldd").arg(host).output()?; // fails for a static binary: no output
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        ensure!(!line.contains("not found"), "{}: {line}", host.display());
        let lib = line
            .split("=>")
            .last()
            .and_then(|s| s.split_whitespace().next());
        if let Some(lib) = lib.filter(|p| p.starts_with('/')) {
            add_file(stage, Path::new(lib), lib)?;
        }
    }
    Ok(())
}

/// Points a private apt list (under `cache/apt/<suite>`) at `suite` and updates it.
fn apt_update(suite: Option<&str>, cache: &Path) -> Result<()> {
    let Some(suite) = suite else { return Ok(()) };
    let dir = cache.join("apt").join(suite);
    fs::create_dir_all(dir.join("lists/partial"))?;
    fs::create_dir_all(dir.join("cache"))?;
    let line = format!("deb [signed-by={KEYRING}] {MIRROR} {suite} main\n");
    fs::write(dir.join("sources.list"), line)?;
    run(apt(Some(suite), cache, "apt-get").args(["-qq", "update"]))
}

/// Resolves a glob to the matching package with the highest version numbers.
fn resolve_package(suite: Option<&str>, cache: &Path, pattern: &str) -> Result<String> {
    if !pattern.contains('*') {
        return Ok(pattern.to_string());
    }
    let regex = format!("^{}$", pattern.replace('.', "\\.").replace('+', "\\+"));
    let regex = regex.replace('*', ".*");
    let mut search = apt(suite, cache, "apt-cache");
    let found = search.args(["search", "--names-only", &regex]).output()?;
    let text = String::from_utf8_lossy(&found.stdout);
    let numbers = |n: &&str| -> Vec<u64> {
        let parts = n.split(|c: char| !c.is_ascii_digit());
        parts.filter_map(|d| d.parse().ok()).collect()
    };
    let names = text.lines().filter_map(|l| l.split(" - ").next());
    let best = names.max_by_key(numbers).map(str::to_string);
    best.with_context(|| format!("no package matches {pattern} (apt-get update?)"))
}

/// Downloads `packages` and unpacks them all into `dir/root`, then stamps `dir` with `key`.
fn unpack_debs(
    suite: Option<&str>,
    cache: &Path,
    dir: &Path,
    packages: &[&str],
    key: &str,
) -> Result<()> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir)?;
    let mut download = apt(suite, cache, "apt-get");
    run(download
        .args(["-q", "download"])
        .args(packages)
        .current_dir(dir))?;
    for deb in fs::read_dir(dir)?.flatten().map(|e| e.path()) {
        if deb.extension().is_some_and(|e| e == "deb") {
            run(Command::new("dpkg-deb")
                .arg("-x")
                .arg(&deb)
                .arg(dir.join("root")))?;
            fs::remove_file(&deb)?;
        }
    }
    fs::write(
        dir.join("fetched"),
        format!("{key}\n{}\n", packages.join(" ")),
    )?;
    Ok(())
}

fn is_fetched(dir: &Path, key: &str) -> bool {
    let stamp = fs::read_to_string(dir.join("fetched"));
    stamp.is_ok_and(|s| s.lines().next() == Some(key))
}

/// `apt-get`/`apt-cache`, with a private sources list and state when a suite is given.
fn apt(suite: Option<&str>, cache: &Path, tool: &str) -> Command {
    let mut cmd = Command::new(tool);
    cmd.args(["-o", "APT::Sandbox::User=root"]);
    if let Some(suite) = suite {
        let dir = cache.join("apt").join(suite);
        let dir = fs::canonicalize(&dir).unwrap_or(dir); // apt-get download runs elsewhere
        let list = dir.join("sources.list");
        cmd.arg("-o")
            .arg(format!("Dir::Etc::SourceList={}", list.display()));
        cmd.arg("-o")
            .arg(format!("Dir::State::Lists={}/lists", dir.display()));
        cmd.arg("-o")
            .arg(format!("Dir::Cache={}/cache", dir.display()));
        cmd.args(["-o", "Dir::Etc::SourceParts=/nonexistent"]);
        cmd.args([
            "-o",
            "APT::Architectures=amd64",
            "-o",
            "Acquire::Languages=none",
        ]);
    }
    cmd
}

fn find_file(dir: &Path, pred: &dyn Fn(&str) -> bool) -> Option<PathBuf> {
    for entry in fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_file(&path, pred) {
                return Some(found);
            }
        } else if pred(&entry.file_name().to_string_lossy()) {
            return Some(path);
        }
    }
    None
}

fn only_file(dir: &Path, pred: impl Fn(&str) -> bool) -> Result<PathBuf> {
    let mut paths = fs::read_dir(dir)?.flatten().map(|e| e.path());
    let found = paths.find(|p| p.file_name().is_some_and(|n| pred(&n.to_string_lossy())));
    found.with_context(|| format!("expected file not found in {}", dir.display()))
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    ensure!(status.success(), "{cmd:?} failed: {status}");
    Ok(())
}

fn yes_no(v: bool) -> &'static str {
    if v {
        "yes"
    } else {
        "no"
    }
}
