//! `cargo xtask fuzz [--secs N] [TARGET]`: the libFuzzer targets of `fuzz/` (cargo-fuzz, on the
//! nightly toolchain), each run for a while; `cargo xtask test` runs them for [`STAGE_SECS`] each.
//!
//! - Built once with `cargo +nightly fuzz build` and `AYA_BUILD_SKIP=1` (the targets are pure
//!   code: connlife's build script then leaves a placeholder instead of the eBPF object), into
//!   `$CARGO_TARGET_DIR/fuzz` or `target/fuzz`.
//! - Each target reads the committed seeds of `fuzz/seeds/<target>/` (never written) and grows
//!   its working corpus in `fuzz/corpus/<target>/` (ignored by git, kept between runs, so a long
//!   run goes on from what the short ones found).
//! - A panic, an ASan report, an input slower than [`INPUT_TIMEOUT_SECS`] or an out-of-memory
//!   fails the run with the target's name and the input libFuzzer saved under
//!   `fuzz/artifacts/<target>/` (again: `AYA_BUILD_SKIP=1 cargo +nightly fuzz run TARGET INPUT`);
//!   every target runs even after one failed. libFuzzer's own output goes to
//!   `<target dir>/logs/<target>.log`.

use anyhow::{bail, ensure, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::setup::{self, CARGO_FUZZ_VERSION, FUZZ_TOOLCHAIN};
use crate::util::{begin, secs, tail};

/// The `[[bin]]`s of fuzz/Cargo.toml.
pub const TARGETS: &[&str] = &["decode", "record", "session"];
/// Seconds each target runs in `cargo xtask test`.
pub const STAGE_SECS: u64 = 20;
/// One input that takes longer than this is a failure (a hang), as a crash is.
const INPUT_TIMEOUT_SECS: u64 = 10;

/// How one target's run ended.
#[derive(Debug, Default, PartialEq)]
struct Outcome {
    /// The input libFuzzer saved (`Test unit written to PATH`) when the run failed.
    artifact: Option<String>,
    /// The first line that says what went wrong (panic message, sanitizer or libFuzzer error).
    why: Option<String>,
    /// From `Done N runs in S second(s)`.
    runs: Option<u64>,
    /// From libFuzzer's last status line (`cov: N ... corp: N/...`).
    cov: Option<u64>,
    corpus: Option<u64>,
}

/// Runs `target` (else every one of [`TARGETS`]) for `secs` seconds each.
pub fn fuzz(root: &Path, secs_each: u64, target: Option<&str>) -> Result<()> {
    let targets: Vec<&str> = match target {
        Some(t) => {
            let known = TARGETS.iter().find(|k| **k == t);
            vec![*known.with_context(|| format!("no fuzz target `{t}` (targets: {})", TARGETS.join(", ")))?]
        }
        None => TARGETS.to_vec(),
    };
    ensure!(secs_each > 0, "--secs must be at least 1");
    setup::prepend_cargo_bin_to_path();
    setup::sysroot_of(FUZZ_TOOLCHAIN).with_context(|| {
        format!("cargo-fuzz builds the targets with the {FUZZ_TOOLCHAIN} toolchain (`cargo xtask setup` installs it)")
    })?;
    if let Err(why) = setup::cargo_fuzz_state() {
        bail!("cargo-fuzz {CARGO_FUZZ_VERSION}: {why} (`cargo xtask setup` installs it)");
    }
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("fuzz"),
        _ => root.join("target/fuzz"),
    };
    let logs = target_dir.join("logs");
    fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;

    let started = Instant::now();
    let build_log = logs.join("build.log");
    println!("$ cargo +{FUZZ_TOOLCHAIN} fuzz build (AYA_BUILD_SKIP=1)");
    let st = cargo_fuzz(root, &target_dir, &["build"], &build_log)?;
    if !st.success() {
        let tail = tail(&build_log, 15);
        bail!(
            "cargo +{FUZZ_TOOLCHAIN} fuzz build failed ({st}); log: {}\n{tail}",
            build_log.display()
        );
    }
    println!("built in {}", secs(started));

    let mut failed = Vec::new();
    for target in targets {
        let started = Instant::now();
        let log = logs.join(format!("{target}.log"));
        let (corpus, seeds) = (format!("fuzz/corpus/{target}"), format!("fuzz/seeds/{target}"));
        fs::create_dir_all(root.join(&corpus)).with_context(|| format!("creating {corpus}"))?;
        let max_time = format!("-max_total_time={secs_each}");
        let timeout = format!("-timeout={INPUT_TIMEOUT_SECS}");
        begin(&format!("{target}: {secs_each} s ... "))?;
        let args = ["run", target, &corpus, &seeds, "--", &max_time, &timeout];
        let st = cargo_fuzz(root, &target_dir, &args, &log)?;
        let out = outcome(&fs::read_to_string(&log).unwrap_or_default());
        let took = secs(started);
        let stats = match (out.runs, out.cov, out.corpus) {
            (Some(r), Some(c), Some(n)) => format!("{r} runs, coverage {c}, corpus {n}, "),
            _ => String::new(),
        };
        if st.success() && out.artifact.is_none() {
            println!("ok ({stats}{took})");
            continue;
        }
        let why = out.why.unwrap_or_else(|| format!("cargo fuzz run exited with {st}"));
        let input = out.artifact.as_deref().unwrap_or("(none saved)");
        println!("FAILED ({took})");
        println!("  {why}");
        println!("  input: {input}");
        println!("  again: AYA_BUILD_SKIP=1 cargo +{FUZZ_TOOLCHAIN} fuzz run {target} {input}");
        println!("  log:   {}", log.display());
        failed.push(format!("{target} ({why}; input {input})"));
    }
    ensure!(failed.is_empty(), "fuzz target {}", failed.join(", "));
    Ok(())
}

/// `cargo +nightly fuzz ARGS` in `root` with stdout and stderr to `log`.
fn cargo_fuzz(root: &Path, target_dir: &Path, args: &[&str], log: &Path) -> Result<std::process::ExitStatus> {
    let toolchain = format!("+{FUZZ_TOOLCHAIN}");
    let dir = target_dir.to_string_lossy();
    let args = [&toolchain, "fuzz", args[0], "--target-dir", &dir]
        .into_iter()
        .chain(args[1..].iter().copied());
    let cmd = duct::cmd("cargo", args).dir(root).env("AYA_BUILD_SKIP", "1");
    // `cargo run` (xtask's own) points CARGO at the stable cargo; cargo-fuzz runs `cargo` from
    // PATH, the rustup proxy, which RUSTUP_TOOLCHAIN sends to nightly.
    let cmd = cmd
        .env("RUSTUP_TOOLCHAIN", FUZZ_TOOLCHAIN)
        .env_remove("CARGO")
        .env_remove("RUSTC");
    let cmd = cmd
        .env_remove("CARGO_TARGET_DIR")
        .stdin_null()
        .stderr_to_stdout()
        .stdout_path(log);
    Ok(cmd.unchecked().run().context("running cargo fuzz")?.status)
}

/// What libFuzzer's output says about a run.
fn outcome(log: &str) -> Outcome {
    let mut o = Outcome::default();
    let lines: Vec<&str> = log.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let line = line.trim();
        if let Some(rest) = line.split_once("Test unit written to ").map(|(_, r)| r) {
            o.artifact = Some(rest.trim().to_string());
        }
        if o.why.is_none() {
            if line.contains("panicked at") {
                // The message is on the next line(s), after `panicked at FILE:LINE:COL:`.
                let msg = lines.get(i + 1).map(|m| m.trim()).unwrap_or_default();
                o.why = Some(format!("{line} {msg}").trim().to_string());
            } else if line.starts_with("==") && line.contains("ERROR:") {
                o.why = Some(line.split_once("ERROR:").map_or(line, |(_, r)| r).trim().to_string());
            }
        }
        if let Some(rest) = line.strip_prefix("Done ") {
            o.runs = rest.split_whitespace().next().and_then(|n| n.parse().ok());
        }
        if line.starts_with('#') {
            let word_after = |key: &str| {
                let mut words = line.split_whitespace();
                words.find(|w| *w == key)?;
                words.next()?.split('/').next()?.parse().ok()
            };
            o.cov = word_after("cov:").or(o.cov);
            o.corpus = word_after("corp:").or(o.corpus);
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_clean_run() {
        let log = "INFO: Seed: 1\n#2\tINITED cov: 120 ft: 130 corp: 11/1496b exec/s: 0 rss: 40Mb\n\
                   #4096\tpulse  cov: 150 ft: 200 corp: 30/4000b lim: 136 exec/s: 2048 rss: 50Mb\n\
                   Done 412345 runs in 21 second(s)\n";
        let o = outcome(log);
        let want = Outcome {
            artifact: None,
            why: None,
            runs: Some(412345),
            cov: Some(150),
            corpus: Some(30),
        };
        assert_eq!(o, want);
    }

    #[test]
    fn reads_a_crash_with_its_input_and_message() {
        let log = "#10\tNEW    cov: 5 ft: 5 corp: 2/10b\n\
                   thread '<unnamed>' panicked at connlife/src/model/conns.rs:12:5:\n\
                   attempt to subtract with overflow\n\
                   ==1234== ERROR: libFuzzer: deadly signal\n\
                   artifact_prefix='/w/fuzz/artifacts/session/'; Test unit written to /w/fuzz/artifacts/session/crash-ab12\n";
        let o = outcome(log);
        assert_eq!(o.artifact.as_deref(), Some("/w/fuzz/artifacts/session/crash-ab12"));
        assert_eq!(
            o.why.as_deref(),
            Some("thread '<unnamed>' panicked at connlife/src/model/conns.rs:12:5: attempt to subtract with overflow")
        );
    }

    #[test]
    fn reads_a_timeout() {
        let log = "==99== ERROR: libFuzzer: timeout after 10 seconds\n\
                   artifact_prefix='a/'; Test unit written to a/timeout-ff\n";
        let o = outcome(log);
        assert_eq!(o.why.as_deref(), Some("libFuzzer: timeout after 10 seconds"));
        assert_eq!(o.artifact.as_deref(), Some("a/timeout-ff"));
    }
}
