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
use std::path::{Path, PathBuf};
use std::time::Instant;
use std::{env, fs};

use crate::util::{begin, is_root, quiet, secs};

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
    "bpftool",
    "python3",
    "util-linux",
    "tmux",
    "chromium",
    "fonts-dejavu-core",
    "qemu-system-x86",
    "busybox-static",
    "cpio",
];

/// Runs every step in order; the first one that cannot be done stops setup with its reason.
pub fn setup(no_apt: bool) -> Result<()> {
    prepend_cargo_bin_to_path();
    let sysroot = rust_components().context("rust components")?;
    bpf_linker(&sysroot).with_context(|| format!("bpf-linker {BPF_LINKER_VERSION}"))?;
    cargo_fuzz().with_context(|| format!("cargo-fuzz {CARGO_FUZZ_VERSION}"))?;
    tracefs().context("tracefs")?;
    if no_apt {
        println!("debian packages: skipped (--no-apt)");
    } else {
        debian_packages(PACKAGES).context("debian packages")?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Rust components

/// Makes sure the toolchain and its components are there; returns the toolchain's sysroot.
fn rust_components() -> Result<PathBuf> {
    let started = Instant::now();
    ensure!(
        duct::cmd!("rustup", "--version")
            .stdout_null()
            .stderr_null()
            .run()
            .is_ok(),
        "rustup not found on PATH: connlife builds the eBPF crate through rustup's `{TOOLCHAIN}` \
         toolchain; install Rust with rustup"
    );
    let installed_toolchain = sysroot_of(TOOLCHAIN).is_err();
    if installed_toolchain {
        let install = duct::cmd!("rustup", "toolchain", "install", TOOLCHAIN, "--profile", "minimal");
        quiet(install, &log("rustup-toolchain"))?;
    }
    let sysroot = sysroot_of(TOOLCHAIN)?;
    let missing = || -> Vec<&str> {
        COMPONENTS
            .iter()
            .copied()
            .filter(|c| !component_present(&sysroot, c))
            .collect()
    };
    let (names, add) = (COMPONENTS.join(", "), missing());
    if add.is_empty() && !installed_toolchain {
        println!("{names} ({TOOLCHAIN}): present");
        return Ok(sysroot);
    }
    if !add.is_empty() {
        let args = ["component", "add", "--toolchain", TOOLCHAIN].iter().chain(&add);
        quiet(duct::cmd("rustup", args), &log("rustup-component"))?;
        let still = missing();
        ensure!(
            still.is_empty(),
            "rustup added {} but they are still missing",
            still.join(", ")
        );
    }
    let what = match installed_toolchain {
        true => format!("installed toolchain {TOOLCHAIN} and {}", add.join(", ")),
        false => format!("added {}", add.join(", ")),
    };
    println!("{names} ({TOOLCHAIN}): {what} ({})", secs(started));
    Ok(sysroot)
}

/// `rustc --print sysroot` of a rustup toolchain.
pub fn sysroot_of(toolchain: &str) -> Result<PathBuf> {
    let out = duct::cmd!("rustup", "run", toolchain, "rustc", "--print", "sysroot")
        .stderr_null()
        .read();
    let out = out.with_context(|| {
        format!("rust toolchain `{toolchain}` is not installed (rustup toolchain install {toolchain})")
    })?;
    Ok(PathBuf::from(out.trim()))
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
// Tools installed with cargo install: bpf-linker and cargo-fuzz

/// `$CARGO_HOME`, where `cargo install` puts binaries (under `bin/`).
pub fn cargo_home() -> PathBuf {
    match env::var_os("CARGO_HOME") {
        Some(h) if !h.is_empty() => PathBuf::from(h),
        _ => home().join(".cargo"),
    }
}

fn home() -> PathBuf {
    let home = env::var_os("HOME").filter(|h| !h.is_empty());
    home.map_or_else(|| PathBuf::from("/root"), PathBuf::from)
}

/// Where connlife keeps lasting setup state: `$HOME/.local/share/connlife`.
pub fn data_dir() -> PathBuf {
    home().join(".local/share/connlife")
}

/// Where [`quiet`] keeps the output of setup step `name`.
fn log(name: &str) -> PathBuf {
    data_dir().join(format!("logs/{name}.log"))
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
    if let Ok(joined) = env::join_paths(std::iter::once(bin).chain(env::split_paths(&path))) {
        // Called before any thread is started.
        env::set_var("PATH", joined);
    }
}

/// `name` as the build will find it: first on PATH, else where `cargo install` puts it.
fn installed(name: &str) -> PathBuf {
    which::which(name).unwrap_or_else(|_| cargo_home().join("bin").join(name))
}

/// `Ok(version line)` when `bin ARGS` runs and prints `version`, else why not.
pub fn version_of(bin: &Path, args: &[&str], version: &str) -> Result<String, String> {
    let shown = bin.display();
    let out = duct::cmd(bin, args)
        .stdin_null()
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run();
    let out = match out {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(format!("{shown} is not installed")),
        Err(e) => return Err(format!("{shown} does not run: {e}")),
        Ok(out) => out,
    };
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        Err(format!("{shown} --version failed ({}): {}", out.status, why.trim()))
    } else if line.split_whitespace().any(|w| w == version) {
        Ok(line)
    } else {
        Err(format!("{shown} is `{line}`, not {version}"))
    }
}

/// `cargo install --locked --force SPEC ARGS` with [`TOOLCHAIN`], output to the step's log.
fn cargo_install(spec: &str, args: &[&str], envs: &[(&str, &Path)], log_name: &str) -> Result<()> {
    let install = ["run", TOOLCHAIN, "cargo", "install", "--locked", "--force", spec];
    // Away from this workspace, so its .cargo/config.toml does not apply.
    fs::create_dir_all(data_dir())?;
    let cmd = duct::cmd("rustup", install.iter().chain(args)).env_remove("CARGO_TARGET_DIR");
    let cmd = envs.iter().fold(cmd.dir(data_dir()), |cmd, (k, v)| cmd.env(k, v));
    quiet(cmd, &log(log_name))
}

/// The toolchain's shared LLVM library, `<sysroot>/lib/libLLVM.so.<major>.<minor>-rust-...`.
pub fn find_llvm_lib(sysroot: &Path) -> Result<PathBuf> {
    let dir = sysroot.join("lib");
    let entries = fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
    let paths = entries.flatten().map(|e| e.path());
    let mut found: Vec<PathBuf> = paths.filter(|p| file_name(p).starts_with("libLLVM.so.")).collect();
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

/// Whether `<prefix>/lib/libLLVM.so` and `<prefix>/lib/<libLLVM file name>` both resolve to the
/// toolchain's libLLVM.
pub fn prefix_ok(prefix: &Path, llvm_lib: &Path) -> bool {
    let want = fs::canonicalize(llvm_lib).ok();
    let resolves = |name: &str| want.is_some() && fs::canonicalize(prefix.join("lib").join(name)).ok() == want;
    resolves("libLLVM.so") && resolves(&file_name(llvm_lib))
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

fn bpf_linker(sysroot: &Path) -> Result<()> {
    let started = Instant::now();
    let llvm_lib = find_llvm_lib(sysroot)?;
    let (lib_name, prefix) = (file_name(&llvm_lib), llvm_prefix(TOOLCHAIN));
    let linker = || version_of(&installed("bpf-linker"), &["--version"], BPF_LINKER_VERSION);
    let was_ok = prefix_ok(&prefix, &llvm_lib);
    if !was_ok {
        make_prefix(&prefix, &llvm_lib)?;
    }
    // A stale prefix (the toolchain was updated) can be all that kept the linker from running.
    let why = match linker() {
        Ok(_) if was_ok => {
            println!(
                "bpf-linker {BPF_LINKER_VERSION}: present ({lib_name} via {})",
                prefix.display()
            );
            return Ok(());
        }
        Ok(_) => {
            println!(
                "bpf-linker {BPF_LINKER_VERSION}: present, relinked {}",
                prefix.display()
            );
            return Ok(());
        }
        Err(why) => why,
    };
    let feature = format!("llvm-{}", llvm_major(&llvm_lib)?);
    begin(&format!(
        "bpf-linker {BPF_LINKER_VERSION}: {why}; building against {lib_name} (about 70 s) ... "
    ))?;
    let spec = format!("bpf-linker@{BPF_LINKER_VERSION}");
    let args = ["--no-default-features", "--features", &feature];
    cargo_install(&spec, &args, &[("LLVM_PREFIX", &prefix)], "bpf-linker-install")?;
    if let Err(why) = linker() {
        bail!("installed, but {why}");
    }
    println!("built ({}, RUNPATH {}/lib)", secs(started), prefix.display());
    Ok(())
}

/// `Ok(version line)` when `cargo-fuzz` runs and is [`CARGO_FUZZ_VERSION`], else why not.
pub fn cargo_fuzz_state() -> Result<String, String> {
    version_of(&installed("cargo-fuzz"), &["fuzz", "--version"], CARGO_FUZZ_VERSION)
}

/// The nightly toolchain (installed with the minimal profile when missing) and cargo-fuzz.
fn cargo_fuzz() -> Result<()> {
    let started = Instant::now();
    let mut did = Vec::new();
    if sysroot_of(FUZZ_TOOLCHAIN).is_err() {
        begin(&format!(
            "cargo-fuzz {CARGO_FUZZ_VERSION}: installing toolchain {FUZZ_TOOLCHAIN} ... "
        ))?;
        let install = duct::cmd!("rustup", "toolchain", "install", FUZZ_TOOLCHAIN, "--profile", "minimal");
        quiet(install, &log("rustup-toolchain-nightly"))?;
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
            let head = if did.is_empty() {
                format!("cargo-fuzz {CARGO_FUZZ_VERSION}: ")
            } else {
                String::new()
            };
            begin(&format!("{head}{why}; building (about 90 s) ... "))?;
            cargo_install(
                &format!("cargo-fuzz@{CARGO_FUZZ_VERSION}"),
                &[],
                &[],
                "cargo-fuzz-install",
            )?;
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
    quiet(
        duct::cmd!("mount", "-t", "tracefs", "nodev", TRACEFS),
        &log("mount-tracefs"),
    )?;
    println!("tracefs: mounted at {TRACEFS}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Debian packages

/// The packages of `wanted` that dpkg does not list as installed.
pub fn missing_packages<S: AsRef<str>>(wanted: &[S]) -> Result<Vec<String>> {
    let wanted: Vec<&str> = wanted.iter().map(AsRef::as_ref).collect();
    let query = duct::cmd("dpkg-query", ["-W", "-f=${Status} ${Package}\n"].iter().chain(&wanted));
    // Unchecked, stderr to /dev/null: "no packages found matching" for unknown ones.
    let have = query
        .stderr_null()
        .unchecked()
        .read()
        .context("running dpkg-query (is this Debian?)")?;
    let installed = |p: &&str| {
        let mut lines = have.lines();
        lines.any(|l| l.ends_with(&format!(" {p}")) && l.starts_with("install ok installed"))
    };
    Ok(wanted.into_iter().filter(|p| !installed(p)).map(String::from).collect())
}

/// `apt-get update` and `apt-get install` of `missing`, which must then be installed.
pub fn apt_install(missing: &[String]) -> Result<()> {
    need_root("install Debian packages")?;
    let apt = |args: Vec<&str>| duct::cmd("apt-get", args).env("DEBIAN_FRONTEND", "noninteractive");
    quiet(apt(vec!["-qq", "update"]), &log("apt-update"))?;
    let install = ["-y", "-qq", "--no-install-recommends", "install"].into_iter();
    quiet(
        apt(install.chain(missing.iter().map(String::as_str)).collect()),
        &log("apt-install"),
    )?;
    let still = missing_packages(missing)?;
    ensure!(still.is_empty(), "apt-get did not install {}", still.join(" "));
    Ok(())
}

fn debian_packages(wanted: &[&str]) -> Result<()> {
    let started = Instant::now();
    let missing = missing_packages(wanted)?;
    if missing.is_empty() {
        println!("debian packages: present ({})", wanted.join(" "));
        return Ok(());
    }
    need_root("install Debian packages")?;
    begin(&format!("debian packages: installing {} ... ", missing.join(" ")))?;
    apt_install(&missing)?;
    println!("installed ({})", secs(started));
    Ok(())
}

fn need_root(what: &str) -> Result<()> {
    ensure!(is_root(), "must run as root to {what} (try: sudo -E cargo xtask setup)");
    Ok(())
}

pub fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in sysroot with a libLLVM of the real naming scheme, in a fresh temporary directory.
    fn fake_sysroot() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("sysroot");
        fs::create_dir_all(root.join("lib")).unwrap();
        let lib = root.join("lib/libLLVM.so.22.1-rust-1.95.0-stable");
        fs::write(&lib, b"").unwrap();
        fs::write(root.join("lib/libLLVM-22-rust-1.95.0-stable.so"), b"").unwrap();
        (dir, root, lib)
    }

    #[test]
    fn finds_llvm_lib_and_major() {
        let (_dir, root, lib) = fake_sysroot();
        assert_eq!(find_llvm_lib(&root).unwrap(), lib);
        assert_eq!(llvm_major(&lib).unwrap(), 22);
        assert!(llvm_major(Path::new("libLLVM.so")).is_err());
    }

    /// The fresh-machine path: no prefix and no linker means "build", without touching the
    /// installed linker.
    #[test]
    fn fresh_machine_needs_prefix_and_build() {
        let (dir, _root, lib) = fake_sysroot();
        let prefix = dir.path().join("no-such-prefix");
        let linker = dir.path().join("cargo/bin/bpf-linker");
        assert!(!prefix_ok(&prefix, &lib));
        let why = version_of(&linker, &["--version"], BPF_LINKER_VERSION).unwrap_err();
        assert!(why.contains("not installed"), "{why}");

        make_prefix(&prefix, &lib).unwrap();
        assert!(prefix_ok(&prefix, &lib));
        // Idempotent, and a link from an older toolchain is dropped.
        fs::write(prefix.join("lib/libLLVM.so.21.1-rust-1.90.0-stable"), b"").unwrap();
        make_prefix(&prefix, &lib).unwrap();
        let names = fs::read_dir(prefix.join("lib")).unwrap();
        let mut names: Vec<String> = names.map(|e| file_name(&e.unwrap().path())).collect();
        names.sort();
        assert_eq!(names, ["libLLVM.so", "libLLVM.so.22.1-rust-1.95.0-stable"]);
    }

    /// A prefix whose links point at another library is stale.
    #[test]
    fn stale_prefix_is_detected() {
        let (dir, root, lib) = fake_sysroot();
        let prefix = dir.path().join("prefix");
        make_prefix(&prefix, &root.join("lib/libLLVM-22-rust-1.95.0-stable.so")).unwrap();
        assert!(!prefix_ok(&prefix, &lib));
    }

    /// A program that runs but is not bpf-linker 0.13.0 is not accepted.
    #[test]
    fn wrong_linker_version_is_rejected() {
        let why = version_of(Path::new("/bin/true"), &["--version"], BPF_LINKER_VERSION).unwrap_err();
        assert!(why.contains("not 0.13.0"), "{why}");
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
        assert!(prefix_ok(&llvm_prefix(TOOLCHAIN), &lib));
        version_of(&linker, &["--version"], BPF_LINKER_VERSION).unwrap();
        // A prefix that does not exist is reported missing.
        assert!(!prefix_ok(Path::new("/nonexistent/prefix"), &lib));
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
        if duct::cmd!("dpkg-query", "--version").stdout_null().run().is_err() {
            return eprintln!("skipped: no dpkg-query");
        }
        let missing = missing_packages(&["dpkg", "connlife-no-such-package"]).unwrap();
        assert_eq!(missing, ["connlife-no-such-package"]);
    }

    #[test]
    fn components_are_detected_by_file() {
        let (_dir, root, _) = fake_sysroot();
        assert!(!component_present(&root, "rust-src"));
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::write(root.join("bin/rustfmt"), b"").unwrap();
        assert!(component_present(&root, "rustfmt"));
        assert!(!component_present(&root, "clippy"));
    }
}
