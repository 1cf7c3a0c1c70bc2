//! connlife's task runner: `cargo xtask <command>` (the alias is in .cargo/config.toml).
//!
//! - `setup`: installs what the build and tests need (idempotent, quick when done).
//! - `test`: THE test command (README and CI): setup, fmt, clippy, build, tests, fuzzing (short),
//!   kernel matrix.
//! - `fuzz`: the cargo-fuzz targets of `fuzz/` (decoder, record reader, session), longer.
//! - `run`: builds connlife and shows it on a leaky demo workload (or on `--pid PID`).
//! - `test-kernels`: the kernel matrix alone: connlife's privileged suite on the host and on the
//!   Debian kernels of xtask/kernels.toml booted under QEMU (docs/kernel-matrix.md).

mod bench;
mod fuzz;
mod run;
mod setup;
mod test_kernels;
mod util;

use anyhow::{ensure, Context, Result};
use clap::{Parser, Subcommand};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "connlife's task runner")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install rust-src, bpf-linker, tracefs and the Debian packages the tests use.
    Setup {
        /// Skip the Debian packages.
        #[arg(long)]
        no_apt: bool,
    },
    /// Setup, then cargo fmt --check, clippy, release build, all tests, fuzzing, kernel matrix.
    Test {
        /// Skip the Debian packages in setup.
        #[arg(long)]
        no_apt: bool,
    },
    /// Build connlife and watch the built-in leaky demo workload (or --pid PID).
    Run {
        /// Watch this process instead of starting the demo workload (runs until Ctrl-C).
        #[arg(long)]
        pid: Option<u32>,
        /// Stop after this long (default 40s for the demo, until Ctrl-C with --pid).
        #[arg(long, value_parser = run::parse_duration)]
        duration: Option<Duration>,
        /// Extra connlife arguments, after `--`.
        #[arg(last = true)]
        extra: Vec<String>,
    },
    /// Run the fuzz targets (decode, record, session) for --secs each; a crash fails with its input.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 300)]
        secs: u64,
        /// Only this target.
        target: Option<String>,
    },
    /// Overhead of connlife and other tracers on a TCP connection churn (or --memory).
    Bench(bench::Args),
    /// connlife check and the privileged suite on the host and on each kernel of xtask/kernels.toml
    /// under QEMU; writes target/kernel-matrix.md and, after a full run, docs/kernel-matrix.md.
    TestKernels {
        /// Only this row of xtask/kernels.toml (repeatable); docs are then left as they are.
        #[arg(long = "kernel", value_name = "NAME")]
        kernels: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: what failed and why (no backtrace, even with RUST_BACKTRACE set).
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    // The workspace root: the parent of this crate's directory.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    match cli.command {
        Cmd::Setup { no_apt } => setup::setup(no_apt),
        Cmd::Test { no_apt } => test(&root, no_apt),
        Cmd::Fuzz { secs, target } => fuzz::fuzz(&root, secs, target.as_deref()),
        Cmd::Bench(args) => bench::bench(&root, args),
        Cmd::TestKernels { kernels } => test_kernels::matrix(&root, &kernels, true),
        Cmd::Run { pid, duration, extra } => run::run(&root, pid, duration, extra),
    }
}

/// Test counts summed over every `test result:` line cargo test printed.
#[derive(Debug, Default, PartialEq)]
struct Counts {
    passed: u64,
    failed: u64,
    ignored: u64,
}

fn test(root: &Path, no_apt: bool) -> Result<()> {
    let ws = "--workspace --exclude connlife-ebpf";
    let mut stages: Vec<(&str, Duration, bool)> = Vec::new();
    let mut counts: Option<Counts> = None;
    let all = Instant::now();
    let mut stage = |name: &'static str, f: &mut dyn FnMut() -> Result<()>| -> Result<()> {
        println!("==> {name}");
        let started = Instant::now();
        let result = f();
        stages.push((name, started.elapsed(), result.is_ok()));
        result.with_context(|| format!("test stage `{name}` failed"))
    };
    let result = (|| -> Result<()> {
        stage("setup", &mut || setup::setup(no_apt))?;
        stage("fmt", &mut || cargo(root, "fmt --all --check", &[]))?;
        // The eBPF object is not needed to lint userspace: build.rs leaves a placeholder.
        let clippy = format!("clippy {ws} --all-targets -- -D warnings");
        stage("clippy", &mut || cargo(root, &clippy, &[("AYA_BUILD_SKIP", "1")]))?;
        stage("build", &mut || cargo(root, &format!("build --release {ws}"), &[]))?;
        let tests = format!("test --release {ws} -- --test-threads=1");
        stage("test", &mut || {
            counts = Some(cargo_test(root, &tests)?);
            Ok(())
        })?;
        stage("fuzz", &mut || fuzz::fuzz(root, fuzz::STAGE_SECS, None))?;
        // promtool rules/config checks and tests, manifest structure, dashboard JSON.
        let deploy = duct::cmd!("bash", "deploy/check.sh").dir(root);
        stage("deploy files", &mut || {
            Ok(_ = deploy.run().context("deploy/check.sh failed")?)
        })?;
        // connlife's privileged suite natively and on each kernel of xtask/kernels.toml under
        // QEMU; any failing row fails `test`. docs/kernel-matrix.md is refreshed by
        // `cargo xtask test-kernels` only.
        stage("kernel matrix", &mut || test_kernels::matrix(root, &[], false))?;
        Ok(())
    })();
    println!("\n==> summary ({:.0} s in all)", all.elapsed().as_secs_f64());
    for (name, took, ok) in &stages {
        let verdict = if *ok { "ok" } else { "FAILED" };
        println!("{name:>14}  {:>6.1} s  {verdict}", took.as_secs_f64());
    }
    // The plain closing line CI reads: only when the tests ran to the end.
    if let Some(c) = &counts {
        let (p, f, s) = (c.passed, c.failed, c.ignored);
        println!("tests: {p} passed, {f} failed, {s} skipped");
    }
    result
}

/// `cargo ARGS` (split at spaces) in `root`, its output passed through.
fn cargo(root: &Path, args: &str, envs: &[(&str, &str)]) -> Result<()> {
    println!("$ cargo {args}");
    let cmd = duct::cmd("cargo", args.split(' ')).dir(root);
    envs.iter().fold(cmd, |cmd, (k, v)| cmd.env(k, v)).run()?;
    Ok(())
}

/// `cargo test`, passing its output through while counting results.
fn cargo_test(root: &Path, args: &str) -> Result<Counts> {
    println!("$ cargo {args}");
    let reader = duct::cmd("cargo", args.split(' ')).dir(root).unchecked().reader()?;
    let mut counts = Counts::default();
    for line in BufReader::new(&reader).lines() {
        let line = line?;
        println!("{line}");
        add_counts(&mut counts, &line);
    }
    let status = reader.try_wait()?.context("cargo test did not end")?.status;
    ensure!(
        status.success(),
        "cargo test exited with {status} ({} failed)",
        counts.failed
    );
    Ok(counts)
}
/// Adds `test result: ok. 5 passed; 1 failed; 2 ignored; ...` to `counts`.
fn add_counts(counts: &mut Counts, line: &str) {
    let Some(rest) = line.trim().strip_prefix("test result: ") else {
        return;
    };
    for part in rest.split(';') {
        let mut words = part.split_whitespace().rev();
        let (Some(what), Some(n)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        match what {
            "passed" => counts.passed += n,
            "failed" => counts.failed += n,
            "ignored" => counts.ignored += n,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_cargo_test_results() {
        let mut c = Counts::default();
        let lines = [
            "test result: ok. 5 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.01s",
            "test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out",
            "running 4 tests",
            "test foo ... ok",
        ];
        for l in lines {
            add_counts(&mut c, l);
        }
        let want = Counts {
            passed: 8,
            failed: 1,
            ignored: 2,
        };
        assert_eq!(c, want);
    }
}
