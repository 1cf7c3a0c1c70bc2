//! Bad input and faults: one clear line on stderr and a non-zero exit (2 for usage), never a
//! panic or a stack trace.
use std::process::{Command, Output};

const CONNLIFE: &str = env!("CARGO_BIN_EXE_connlife");

/// Copied where uid 65534 can run it (the checkout may be in a 0700 directory).
fn runnable_by_anyone() -> String {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("connlife-cli-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.join("connlife");
    if !copy.exists() {
        // Written under a name of this thread's and renamed when complete: another test
        // thread that finds `copy` must never exec a file still being written (ETXTBSY).
        let part = dir.join(format!("connlife.{:?}.part", std::thread::current().id()));
        std::fs::copy(CONNLIFE, &part).unwrap();
        std::fs::set_permissions(&part, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&part, &copy).unwrap();
    }
    copy.to_string_lossy().into_owned()
}

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

/// clap's usage error: one `error:` line (clap adds a blank line and its `--help` tip).
fn one_usage_error(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let err = one_clear_line(out);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    errors[0].to_string()
}

#[test]
fn overflowing_duration_is_a_usage_error_not_a_panic() {
    // Issue 11: Duration::from_secs_f64 panicked (exit 101).
    let out = run(&["--pid", "1", "--idle-after", "99999999999999999999h"]);
    let err = one_usage_error(&out);
    assert!(err.contains("at most 30 days"), "{err}");
    let out = run(&["agent", "--interval", "99999999999999999999h"]);
    assert!(one_usage_error(&out).contains("at most 30 days"));
}

#[test]
fn zero_interval_is_a_usage_error() {
    let out = run(&["--pid", "1", "--interval", "0s"]);
    assert!(one_usage_error(&out).contains("must be more than 0"));
}

#[test]
fn max_conns_zero_is_a_usage_error() {
    // Issue 9: 0 silently meant unlimited.
    let out = run(&["--pid", "1", "--max-conns", "0"]);
    assert!(one_usage_error(&out).contains("must be at least 1"));
}

#[test]
fn zombie_pid_is_a_usage_error() {
    // Issue 9: a zombie was traced for ever. `sleep 0`, never waited for, stays a zombie.
    let mut child = Command::new("sleep").arg("0").spawn().expect("spawn sleep");
    let pid = child.id();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("our child's stat");
        let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next());
        if state == Some("Z") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "sleep 0 is not a zombie: {stat}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let out = run(&["--pid", &pid.to_string()]);
    let _ = child.wait();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        one_clear_line(&out),
        format!("connlife: pid {pid} has already exited (zombie): nothing to trace\n")
    );
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
fn missing_capabilities_are_named_in_one_line() {
    if unsafe { libc::geteuid() } != 0 {
        // Already unprivileged: run directly.
        let out = run(&["--pid", &std::process::id().to_string()]);
        assert_eq!(out.status.code(), Some(1));
        assert!(one_clear_line(&out).contains("missing capabilities"));
        return;
    }
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            &runnable_by_anyone(),
            "--pid",
            "1",
        ])
        .output()
        .expect("setpriv (util-linux)");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let err = one_clear_line(&out);
    assert!(err.starts_with("connlife: missing capabilities CAP_SYS_ADMIN"), "{err}");
    assert!(err.contains("CAP_BPF"), "{err}");
    assert_eq!(err.lines().count(), 1);
}

/// Least privilege: an unprivileged user with the listed capabilities (no uid 0) can run it.
#[test]
fn capabilities_without_root_are_enough() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to hand capabilities to uid 65534");
        return;
    }
    let caps = "+bpf,+perfmon,+sys_admin,+sys_ptrace,+dac_read_search,+syslog";
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            &format!("--inh-caps={caps}"),
            &format!("--ambient-caps={caps}"),
            &runnable_by_anyone(),
            "check",
        ])
        .output()
        .expect("setpriv (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("feature inet_sock_set_state yes"), "{stdout}");
}
