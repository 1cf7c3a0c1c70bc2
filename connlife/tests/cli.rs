//! Bad input and faults: one clear line on stderr and a non-zero exit (2 for usage), never a
//! panic or a stack trace.
use std::process::{Command, Output};

const CONNLIFE: &str = env!("CARGO_BIN_EXE_connlife");

fn run(args: &[&str]) -> Output {
    Command::new(CONNLIFE)
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run connlife")
}

fn one_clear_line(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
    err
}

#[test]
fn missing_pid_is_a_usage_error() {
    let out = run(&["--pid", "999999999"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(one_clear_line(&out), "connlife: no such process: 999999999\n");
}

#[test]
fn kernel_thread_pid_is_a_usage_error() {
    // kthreadd is pid 2 on Linux.
    let out = run(&["--pid", "2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_clear_line(&out).contains("is a kernel thread"));
}

#[test]
fn bad_duration_is_a_usage_error() {
    let out = run(&["--pid", "1", "--close-wait-after", "forever"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_clear_line(&out).contains("invalid duration"));
}

#[test]
fn unreadable_or_corrupt_record_file_fails_cleanly() {
    let out = run(&["report", "/nonexistent/record.jsonl"]);
    assert_eq!(out.status.code(), Some(1));
    let err = one_clear_line(&out);
    assert!(
        err.starts_with("connlife: cannot read record file /nonexistent/record.jsonl"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    let bad = std::env::temp_dir().join(format!("connlife-bad-{}.jsonl", std::process::id()));
    std::fs::write(&bad, "{\"input\":\"start\",\"pids\":[1]\nnot json\n").unwrap();
    let out = run(&["report", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = one_clear_line(&out);
    assert!(err.contains(":1: not a connlife record line"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let _ = std::fs::remove_file(bad);
}

#[test]
fn not_root_says_so_in_one_line() {
    if unsafe { libc::geteuid() } != 0 {
        // Already unprivileged: run directly.
        let out = run(&["--pid", &std::process::id().to_string()]);
        assert_eq!(out.status.code(), Some(1));
        assert!(one_clear_line(&out).contains("needs root"));
        return;
    }
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            CONNLIFE,
            "--pid",
            "1",
        ])
        .output()
        .expect("setpriv (util-linux)");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let err = one_clear_line(&out);
    assert!(err.starts_with("connlife: needs root"), "{err}");
    assert_eq!(err.lines().count(), 1);
}
