//! `cargo xtask setup`: installs everything the build and the tests need, idempotently.
//!
//! Steps, each printing one line that says what it did or that it was already done:
//! 1. Rust components of the `stable` toolchain: `rust-src` (the eBPF crate builds `core` with
//!    `-Z build-std`, under `RUSTC_BOOTSTRAP=1`), `rustfmt` and `clippy` (for `cargo xtask test`).
//! 2. `bpf-linker` 0.13.0 in `$CARGO_HOME/bin`, linked against the toolchain's own `libLLVM`
//!    (Debian 12 has no LLVM 22). `$HOME/.local/share/connlife/llvm-stable/lib` holds two
//!    symlinks to that library and is the binary's RUNPATH, so it must stay where it is.
//! 3. The `nightly` toolchain (minimal profile) and `cargo-fuzz` 0.13.2 in `$CARGO_HOME/bin`,
//!    for the fuzz targets of `fuzz/` (libFuzzer's instrumentation needs nightly's `-Z` flags).
//! 4. tracefs mounted at /sys/kernel/tracing (tracepoints are attached through it).
//! 5. Debian packages the tests use (skipped with `--no-apt`).
//!
//! When everything is in place the whole run takes well under a second.

use anyhow::{bail, ensure, Context, Result};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;
use std::{env, fs};

/// Toolchain that builds both the userspace crates and (with RUSTC_BOOTSTRAP=1) the eBPF crate.
pub const TOOLCHAIN: &str = "stable";
pub const BPF_LINKER_VERSION: &str = "0.13.0";
/// Toolchain that builds the fuzz targets: cargo-fuzz passes `-Z sanitizer` and friends.
pub const FUZZ_TOOLCHAIN: &str = "nightly";
pub const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// Rust components `cargo xtask test` needs from [`TOOLCHAIN`].
const COMPONENTS: &[&str] = &["rust-src", "rustfmt", "clippy"];
pub const TRACEFS: &str = "/sys/kernel/tracing";
/// Debian packages the tests and benchmarks use: Go leak workloads, libbpf-tools' tcpstates and
/// tcplife for the side-by-side benchmark and the second-BPF-tool test, Prometheus for the
/// scrape test, iproute2 (`ss`, `ip netns`) for ground truth, Python for the fork/pre-fork/
/// stalled servers, util-linux (`setpriv`, `prlimit`, `nsenter`) for the least-privilege and
/// fd-pressure tests, tmux for the terminal view, Chromium for the post-mortem page, and QEMU +
/// busybox + cpio for the kernel matrix.
pub const PACKAGES: &[&str] = &[
    "golang-go",
    "libbpf-tools",
    "prometheus",
    "iproute2",
    "python3",
    "util-linux",
    "tmux",
    "chromium",
    "fonts-dejavu-core",
    "qemu-system-x86",
    "busybox-static",
    "cpio",
];

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Skip the Debian packages step.
    pub no_apt: bool,
}

/// Runs every step in order; the first one that cannot be done stops setup with its reason.
pub fn setup(opts: Options) -> Result<()> {
    prepend_cargo_bin_to_path();
    let sysroot = rust_components().context("rust components")?;
    bpf_linker(&sysroot).with_context(|| format!("bpf-linker {BPF_LINKER_VERSION}"))?;
    cargo_fuzz().with_context(|| format!("cargo-fuzz {CARGO_FUZZ_VERSION}"))?;
    tracefs().context("tracefs")?;
    if opts.no_apt {
        println!("debian packages: skipped (--no-apt)");
    } else {
        debian_packages(PACKAGES).context("debian packages")?;
    }
    Ok(())
}

/// Setup without the Debian packages, for `cargo xtask run` (the demo needs none of them).
pub fn setup_for_run() -> Result<()> {
    setup(Options { no_apt: true })
}

// ---------------------------------------------------------------------------------------------
// Rust components

/// Makes sure the toolchain and its components are there; returns the toolchain's sysroot.
fn rust_components() -> Result<PathBuf> {
    let started = Instant::now();
    let rustup = Command::new("rustup").arg("--version").output();
    ensure!(
        rustup.is_ok_and(|o| o.status.success()),
        "rustup not found on PATH: connlife builds the eBPF crate through rustup's `{TOOLCHAIN}` \
         toolchain; install Rust with rustup"
    );
    let mut installed_toolchain = false;
    let sysroot = match sysroot_of(TOOLCHAIN) {
        Ok(s) => s,
        Err(_) => {
            let mut install = Command::new("rustup");
            install.args(["toolchain", "install", TOOLCHAIN, "--profile", "minimal"]);
            quiet(&mut install, "rustup-toolchain")?;
            installed_toolchain = true;
            sysroot_of(TOOLCHAIN)?
        }
    };
    let missing: Vec<&str> = COMPONENTS
        .iter()
        .copied()
        .filter(|c| !component_present(&sysroot, c))
        .collect();
    let names = COMPONENTS.join(", ");
    if missing.is_empty() && !installed_toolchain {
        println!("{names} ({TOOLCHAIN}): present");
        return Ok(sysroot);
    }
    if !missing.is_empty() {
        let mut add = Command::new("rustup");
        add.args(["component", "add", "--toolchain", TOOLCHAIN]);
        quiet(add.args(&missing), "rustup-component")?;
        let still: Vec<&str> = missing
            .iter()
            .copied()
            .filter(|c| !component_present(&sysroot, c))
            .collect();
        ensure!(
            still.is_empty(),
            "rustup added {} but they are still missing",
            still.join(", ")
        );
    }
    let what = if installed_toolchain {
        format!("installed toolchain {TOOLCHAIN} and {}", missing.join(", "))
    } else {
        format!("added {}", missing.join(", "))
    };
    println!("{names} ({TOOLCHAIN}): {what} ({})", secs(started));
    Ok(sysroot)
}

/// `rustc --print sysroot` of a rustup toolchain.
pub fn sysroot_of(toolchain: &str) -> Result<PathBuf> {
    let out = Command::new("rustup")
        .args(["run", toolchain, "rustc", "--print", "sysroot"])
        .stderr(Stdio::null())
        .output()
        .context("running rustup")?;
    ensure!(
        out.status.success(),
        "rust toolchain `{toolchain}` is not installed (rustup toolchain install {toolchain})"
    );
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

/// Checks for a file each component puts into the sysroot (much faster than asking rustup).
pub fn component_present(sysroot: &Path, component: &str) -> bool {
    let marker = match component {
        "rust-src" => "lib/rustlib/src/rust/library/core/Cargo.toml",
        "rustfmt" => "bin/rustfmt",
        "clippy" => "bin/cargo-clippy",
        _ => return false,
    };
    sysroot.join(marker).is_file()
}

// ---------------------------------------------------------------------------------------------
// bpf-linker

/// `$CARGO_HOME`, where `cargo install` puts binaries (under `bin/`).
pub fn cargo_home() -> PathBuf {
    match env::var_os("CARGO_HOME") {
        Some(h) if !h.is_empty() => PathBuf::from(h),
        _ => home().join(".cargo"),
    }
}

fn home() -> PathBuf {
    env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map_or_else(|| PathBuf::from("/root"), PathBuf::from)
}

/// Where connlife keeps lasting setup state: `$HOME/.local/share/connlife`.
pub fn data_dir() -> PathBuf {
    home().join(".local/share/connlife")
}

/// The LLVM prefix bpf-linker is built against (its RUNPATH is `<prefix>/lib`).
pub fn llvm_prefix(toolchain: &str) -> PathBuf {
    data_dir().join(format!("llvm-{toolchain}"))
}

/// aya-build runs `bpf-linker` from PATH, and `cargo install` puts it in `$CARGO_HOME/bin`:
/// make sure that directory is on PATH for this process and everything it starts.
pub fn prepend_cargo_bin_to_path() {
    let bin = cargo_home().join("bin");
    let path = env::var_os("PATH").unwrap_or_default();
    if env::split_paths(&path).any(|p| p == bin) {
        return;
    }
    let joined = env::join_paths(std::iter::once(bin).chain(env::split_paths(&path)));
    if let Ok(joined) = joined {
        // Called before any thread is started.
        env::set_var("PATH", joined);
    }
}

/// The toolchain's shared LLVM library, `<sysroot>/lib/libLLVM.so.<major>.<minor>-rust-...`.
pub fn find_llvm_lib(sysroot: &Path) -> Result<PathBuf> {
    let dir = sysroot.join("lib");
    let mut found: Vec<PathBuf> = fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| file_name(p).starts_with("libLLVM.so."))
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!("no libLLVM.so.* in {}", dir.display()),
        _ => bail!("several libLLVM.so.* in {}: {found:?}", dir.display()),
    }
}

/// LLVM major version from `libLLVM.so.22.1-rust-1.95.0-stable` (-> 22): selects bpf-linker's
/// `llvm-<major>` feature.
pub fn llvm_major(llvm_lib: &Path) -> Result<u32> {
    let name = file_name(llvm_lib);
    let rest = name.strip_prefix("libLLVM.so.").unwrap_or_default();
    let major = rest.split(|c: char| !c.is_ascii_digit()).next();
    major
        .and_then(|m| m.parse().ok())
        .with_context(|| format!("no LLVM version in {name}"))
}

/// What is in place for bpf-linker; computed without changing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkerState {
    /// `<prefix>/lib/libLLVM.so` and `<prefix>/lib/<libLLVM file name>` both resolve to the
    /// toolchain's libLLVM.
    pub prefix_ok: bool,
    /// `Ok(version line)` when the linker runs and is [`BPF_LINKER_VERSION`], else why not.
    pub linker: std::result::Result<String, String>,
}

impl LinkerState {
    pub fn ready(&self) -> bool {
        self.linker.is_ok()
    }
}

/// Inspects the LLVM prefix and the bpf-linker binary (`linker` is a path or a name on PATH).
pub fn linker_state(linker: &Path, prefix: &Path, llvm_lib: &Path) -> LinkerState {
    let want = fs::canonicalize(llvm_lib).ok();
    let lib = prefix.join("lib");
    let resolves = |name: &str| want.is_some() && fs::canonicalize(lib.join(name)).ok() == want;
    let prefix_ok = resolves("libLLVM.so") && resolves(&file_name(llvm_lib));
    let linker = match Command::new(linker).arg("--version").stdin(Stdio::null()).output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!("{} is not installed", linker.display())),
        Err(e) => Err(format!("{} does not run: {e}", linker.display())),
        Ok(out) if !out.status.success() => Err(format!(
            "{} --version failed ({}): {}",
            linker.display(),
            out.status,
            last_line(&out.stderr)
        )),
        Ok(out) => {
            let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if line.split_whitespace().any(|w| w == BPF_LINKER_VERSION) {
                Ok(line)
            } else {
                Err(format!("{} is `{line}`, not {BPF_LINKER_VERSION}", linker.display()))
            }
        }
    };
    LinkerState { prefix_ok, linker }
}

/// (Re)makes `<prefix>/lib` with `libLLVM.so` and `<libLLVM file name>` pointing at `llvm_lib`,
/// removing libLLVM links left from another toolchain version.
pub fn make_prefix(prefix: &Path, llvm_lib: &Path) -> Result<()> {
    let lib = prefix.join("lib");
    fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    for entry in fs::read_dir(&lib)?.flatten() {
        if file_name(&entry.path()).starts_with("libLLVM") {
            fs::remove_file(entry.path())?;
        }
    }
    for name in ["libLLVM.so".to_string(), file_name(llvm_lib)] {
        let link = lib.join(&name);
        std::os::unix::fs::symlink(llvm_lib, &link)
            .with_context(|| format!("linking {} to {}", link.display(), llvm_lib.display()))?;
    }
    Ok(())
}

/// `bpf-linker` as the build will find it: first on PATH, else where `cargo install` puts it.
fn linker_path() -> PathBuf {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .map(|d| d.join("bpf-linker"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| cargo_home().join("bin/bpf-linker"))
}

fn bpf_linker(sysroot: &Path) -> Result<()> {
    let started = Instant::now();
    let llvm_lib = find_llvm_lib(sysroot)?;
    let lib_name = file_name(&llvm_lib);
    let prefix = llvm_prefix(TOOLCHAIN);
    let state = linker_state(&linker_path(), &prefix, &llvm_lib);
    if state.ready() && state.prefix_ok {
        println!(
            "bpf-linker {BPF_LINKER_VERSION}: present ({lib_name} via {})",
            prefix.display()
        );
        return Ok(());
    }
    if !state.prefix_ok {
        make_prefix(&prefix, &llvm_lib)?;
    }
    // A stale prefix (the toolchain was updated) can be all that kept the linker from running.
    let state = linker_state(&linker_path(), &prefix, &llvm_lib);
    if state.ready() {
        println!(
            "bpf-linker {BPF_LINKER_VERSION}: present, relinked {}",
            prefix.display()
        );
        return Ok(());
    }
    let why = state.linker.unwrap_err();
    let feature = format!("llvm-{}", llvm_major(&llvm_lib)?);
    print!("bpf-linker {BPF_LINKER_VERSION}: {why}; building against {lib_name} (about 70 s) ... ");
    std::io::Write::flush(&mut std::io::stdout())?;
    let mut install = Command::new("rustup");
    install.args(["run", TOOLCHAIN, "cargo", "install", "--locked", "--force"]);
    install.arg(format!("bpf-linker@{BPF_LINKER_VERSION}"));
    install.args(["--no-default-features", "--features", &feature]);
    install.env("LLVM_PREFIX", &prefix).env_remove("CARGO_TARGET_DIR");
    // Away from this workspace, so its .cargo/config.toml does not apply.
    fs::create_dir_all(data_dir())?;
    install.current_dir(data_dir());
    quiet(&mut install, "bpf-linker-install")?;
    let state = linker_state(&linker_path(), &prefix, &llvm_lib);
    if let Err(why) = state.linker {
        bail!("installed, but {why}");
    }
    println!("built ({}, RUNPATH {}/lib)", secs(started), prefix.display());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// cargo-fuzz

/// `Ok(version line)` when `cargo-fuzz` runs and is [`CARGO_FUZZ_VERSION`], else why not.
pub fn cargo_fuzz_state() -> std::result::Result<String, String> {
    let path = env::var_os("PATH").unwrap_or_default();
    let bin = env::split_paths(&path)
        .map(|d| d.join("cargo-fuzz"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| cargo_home().join("bin/cargo-fuzz"));
    match Command::new(&bin)
        .args(["fuzz", "--version"])
        .stdin(Stdio::null())
        .output()
    {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("not installed".to_string()),
        Err(e) => Err(format!("{} does not run: {e}", bin.display())),
        Ok(out) if !out.status.success() => Err(format!(
            "{} --version failed ({}): {}",
            bin.display(),
            out.status,
            last_line(&out.stderr)
        )),
        Ok(out) => {
            let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if line.split_whitespace().any(|w| w == CARGO_FUZZ_VERSION) {
                Ok(line)
            } else {
                Err(format!("{} is `{line}`", bin.display()))
            }
        }
    }
}

/// The nightly toolchain (installed with the minimal profile when missing) and cargo-fuzz.
fn cargo_fuzz() -> Result<()> {
    let started = Instant::now();
    let mut did = Vec::new();
    if sysroot_of(FUZZ_TOOLCHAIN).is_err() {
        print!("cargo-fuzz {CARGO_FUZZ_VERSION}: installing toolchain {FUZZ_TOOLCHAIN} ... ");
        std::io::Write::flush(&mut std::io::stdout())?;
        let mut install = Command::new("rustup");
        install.args(["toolchain", "install", FUZZ_TOOLCHAIN, "--profile", "minimal"]);
        quiet(&mut install, "rustup-toolchain-nightly")?;
        sysroot_of(FUZZ_TOOLCHAIN)?;
        did.push(format!("installed toolchain {FUZZ_TOOLCHAIN}"));
    }
    match cargo_fuzz_state() {
        Ok(_) if did.is_empty() => {
            println!("cargo-fuzz {CARGO_FUZZ_VERSION}: present (toolchain {FUZZ_TOOLCHAIN} present)");
            return Ok(());
        }
        Ok(_) => {}
        Err(why) => {
            if did.is_empty() {
                print!("cargo-fuzz {CARGO_FUZZ_VERSION}: ");
            }
            print!("{why}; building (about 90 s) ... ");
            std::io::Write::flush(&mut std::io::stdout())?;
            let mut install = Command::new("rustup");
            install.args(["run", TOOLCHAIN, "cargo", "install", "--locked", "--force"]);
            install.arg(format!("cargo-fuzz@{CARGO_FUZZ_VERSION}"));
            install.env_remove("CARGO_TARGET_DIR");
            // Away from this workspace, so its .cargo/config.toml does not apply.
            fs::create_dir_all(data_dir())?;
            install.current_dir(data_dir());
            quiet(&mut install, "cargo-fuzz-install")?;
            if let Err(why) = cargo_fuzz_state() {
                bail!("installed, but {why}");
            }
            did.push("built".to_string());
        }
    }
    println!("{} ({})", did.join(", "), secs(started));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// tracefs

pub fn tracefs_mounted(mounts: &str, at: &str) -> bool {
    mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        let (_dev, dir, fstype) = (f.next(), f.next(), f.next());
        dir == Some(at) && fstype == Some("tracefs")
    })
}

fn tracefs() -> Result<()> {
    let mounts = fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    if tracefs_mounted(&mounts, TRACEFS) {
        println!("tracefs: already mounted at {TRACEFS}");
        return Ok(());
    }
    need_root("mount tracefs")?;
    let mut mount = Command::new("mount");
    quiet(mount.args(["-t", "tracefs", "nodev", TRACEFS]), "mount-tracefs")?;
    println!("tracefs: mounted at {TRACEFS}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Debian packages

/// The packages of `wanted` that dpkg does not list as installed.
pub fn missing_packages(wanted: &[&str]) -> Result<Vec<String>> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status} ${Package}\n"])
        .args(wanted)
        .stderr(Stdio::null()) // "no packages found matching" for unknown ones
        .output()
        .context("running dpkg-query (is this Debian?)")?;
    let have = String::from_utf8_lossy(&out.stdout);
    let installed = |p: &&str| {
        have.lines()
            .any(|l| l.ends_with(&format!(" {p}")) && l.starts_with("install ok installed"))
    };
    Ok(wanted.iter().filter(|p| !installed(p)).map(|p| p.to_string()).collect())
}

fn debian_packages(wanted: &[&str]) -> Result<()> {
    let started = Instant::now();
    let missing = missing_packages(wanted)?;
    if missing.is_empty() {
        println!("debian packages: present ({})", wanted.join(" "));
        return Ok(());
    }
    need_root("install Debian packages")?;
    print!("debian packages: installing {} ... ", missing.join(" "));
    std::io::Write::flush(&mut std::io::stdout())?;
    let apt = |args: &[&str]| {
        let mut c = Command::new("apt-get");
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    quiet(&mut apt(&["-qq", "update"]), "apt-update")?;
    let mut install = apt(&["-y", "-qq", "--no-install-recommends", "install"]);
    quiet(install.args(&missing), "apt-install")?;
    let still = missing_packages(wanted)?;
    ensure!(still.is_empty(), "apt-get did not install {}", still.join(" "));
    println!("installed ({})", secs(started));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// helpers

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn need_root(what: &str) -> Result<()> {
    ensure!(is_root(), "must run as root to {what} (try: sudo -E cargo xtask setup)");
    Ok(())
}

/// Runs `cmd` with its output captured to `<data dir>/logs/<log>.log`; on failure the error
/// names the command, its status and the last line it printed.
fn quiet(cmd: &mut Command, log: &str) -> Result<()> {
    let shown = describe(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {shown}"))?;
    let dir = data_dir().join("logs");
    let path = dir.join(format!("{log}.log"));
    let text = [out.stdout.as_slice(), out.stderr.as_slice()].concat();
    let saved = fs::create_dir_all(&dir).and_then(|_| fs::write(&path, &text));
    if !out.status.success() {
        let last = last_line(&out.stderr);
        let last = if last.is_empty() { last_line(&out.stdout) } else { last };
        let log = if saved.is_ok() {
            format!("; log: {}", path.display())
        } else {
            String::new()
        };
        bail!("{shown} failed ({}): {last}{log}", out.status);
    }
    Ok(())
}

fn describe(cmd: &Command) -> String {
    let args = cmd.get_args().map(OsStr::to_string_lossy);
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in args {
        s.push(' ');
        s.push_str(&a);
    }
    format!("`{s}`")
}

fn last_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().rev().find(|l| !l.trim().is_empty());
    line.unwrap_or_default().trim().to_string()
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub fn secs(started: Instant) -> String {
    format!("{:.0} s", started.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = env::temp_dir().join(format!("xtask-setup-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    /// A stand-in libLLVM with the real naming scheme.
    fn fake_sysroot(name: &str) -> (PathBuf, PathBuf) {
        let root = scratch(name).join("sysroot");
        fs::create_dir_all(root.join("lib")).unwrap();
        let lib = root.join("lib/libLLVM.so.22.1-rust-1.95.0-stable");
        fs::write(&lib, b"").unwrap();
        fs::write(root.join("lib/libLLVM-22-rust-1.95.0-stable.so"), b"").unwrap();
        (root, lib)
    }

    #[test]
    fn finds_llvm_lib_and_major() {
        let (root, lib) = fake_sysroot("find");
        assert_eq!(find_llvm_lib(&root).unwrap(), lib);
        assert_eq!(llvm_major(&lib).unwrap(), 22);
        assert!(llvm_major(Path::new("libLLVM.so")).is_err());
        let _ = fs::remove_dir_all(root.parent().unwrap());
    }

    /// The fresh-machine path: no prefix and no linker means "build", without touching the
    /// installed linker.
    #[test]
    fn fresh_machine_needs_prefix_and_build() {
        let (root, lib) = fake_sysroot("fresh");
        let prefix = root.parent().unwrap().join("no-such-prefix");
        let linker = root.parent().unwrap().join("cargo/bin/bpf-linker");
        let state = linker_state(&linker, &prefix, &lib);
        assert!(!state.prefix_ok);
        assert!(!state.ready());
        assert!(state.linker.unwrap_err().contains("not installed"));

        make_prefix(&prefix, &lib).unwrap();
        let state = linker_state(&linker, &prefix, &lib);
        assert!(state.prefix_ok, "{state:?}");
        assert!(!state.ready());
        // Idempotent, and a link from an older toolchain is dropped.
        fs::write(prefix.join("lib/libLLVM.so.21.1-rust-1.90.0-stable"), b"").unwrap();
        make_prefix(&prefix, &lib).unwrap();
        let mut names: Vec<String> = fs::read_dir(prefix.join("lib"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["libLLVM.so", "libLLVM.so.22.1-rust-1.95.0-stable"]);
        let _ = fs::remove_dir_all(root.parent().unwrap());
    }

    /// A prefix whose links point at another library is stale.
    #[test]
    fn stale_prefix_is_detected() {
        let (root, lib) = fake_sysroot("stale");
        let other = root.join("lib/libLLVM-22-rust-1.95.0-stable.so");
        let prefix = root.parent().unwrap().join("prefix");
        make_prefix(&prefix, &other).unwrap();
        assert!(!linker_state(Path::new("/nonexistent"), &prefix, &lib).prefix_ok);
        let _ = fs::remove_dir_all(root.parent().unwrap());
    }

    /// A program that runs but is not bpf-linker 0.13.0 is not accepted.
    #[test]
    fn wrong_linker_version_is_rejected() {
        let (root, lib) = fake_sysroot("version");
        let state = linker_state(Path::new("true"), &root, &lib);
        assert!(state.linker.unwrap_err().contains("not 0.13.0"));
        let _ = fs::remove_dir_all(root.parent().unwrap());
    }

    /// On a machine already set up, the real linker and prefix are recognised.
    #[test]
    fn installed_linker_is_ready_when_present() {
        let Ok(sysroot) = sysroot_of(TOOLCHAIN) else {
            return eprintln!("skipped: no {TOOLCHAIN} toolchain");
        };
        let lib = find_llvm_lib(&sysroot).unwrap();
        let linker = cargo_home().join("bin/bpf-linker");
        if !linker.is_file() {
            return eprintln!("skipped: bpf-linker not installed");
        }
        let state = linker_state(&linker, &llvm_prefix(TOOLCHAIN), &lib);
        assert!(state.ready(), "{state:?}");
        // The same linker with a prefix that does not exist: the prefix is reported missing.
        let state = linker_state(&linker, Path::new("/nonexistent/prefix"), &lib);
        assert!(!state.prefix_ok);
    }

    #[test]
    fn parses_tracefs_mounts() {
        let mounts = "proc /proc proc rw 0 0\nnodev /sys/kernel/tracing tracefs rw,relatime 0 0\n";
        assert!(tracefs_mounted(mounts, TRACEFS));
        assert!(!tracefs_mounted("proc /proc proc rw 0 0\n", TRACEFS));
        let debugfs = "debugfs /sys/kernel/tracing debugfs rw 0 0\n";
        assert!(!tracefs_mounted(debugfs, TRACEFS));
    }

    #[test]
    fn unknown_package_is_missing() {
        if Command::new("dpkg-query").arg("--version").output().is_err() {
            return eprintln!("skipped: no dpkg-query");
        }
        let missing = missing_packages(&["dpkg", "connlife-no-such-package"]).unwrap();
        assert_eq!(missing, ["connlife-no-such-package"]);
    }

    #[test]
    fn components_are_detected_by_file() {
        let (root, _) = fake_sysroot("components");
        assert!(!component_present(&root, "rust-src"));
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::write(root.join("bin/rustfmt"), b"").unwrap();
        assert!(component_present(&root, "rustfmt"));
        assert!(!component_present(&root, "clippy"));
        let _ = fs::remove_dir_all(root.parent().unwrap());
    }
}
