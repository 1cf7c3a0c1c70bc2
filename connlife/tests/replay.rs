//! A recording replays into exactly the outputs printed live: every change to the model enters
//! the session as a recorded input (kernel events, use refreshes, snapshots,
//! reconciliations, losses), so `connlife report FILE` is not an approximation of the live run.
mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

/// The session's outputs, in order (summaries and per-connection `closed` records are the
/// driver's and the live run's only, so they are left out).
fn session_outputs(lines: &[Value]) -> Vec<Value> {
    lines
        .iter()
        .filter(|v| !matches!(v["type"].as_str(), Some("summary" | "closed" | "transition")))
        .cloned()
        .collect()
}

#[test]
fn a_recording_replays_into_exactly_what_was_printed_live() {
    let ns = NetNs::new();
    let ka = workload(&ns, &["server", "keepalive"], "keepalive-server");
    let ka_addr = ready_addr(&ka);
    let closing = workload(&ns, &["server", "close"], "closing-server");
    let closing_addr = ready_addr(&closing);
    let mut client = workload(&ns, &["demo-client", &ka_addr, &closing_addr], "client");
    let record = std::env::temp_dir().join(format!("connlife-replay-{}.jsonl", std::process::id()));
    let mut cl = Connlife::start(
        &[client.pid()],
        &[
            "--idle-after",
            "1s",
            "--close-wait-after",
            "1s",
            "--interval",
            "1s",
            "--record",
            record.to_str().unwrap(),
        ],
    );
    client.go();
    cl.wait_count(3, |v| v["type"] == "finding");
    // The client dies mid-run (a signal): its post-mortem is among the outputs too.
    std::thread::sleep(std::time::Duration::from_secs(2));
    client.signal(libc::SIGKILL);
    client.wait_exit();
    cl.wait_for(|v| v["type"] == "postmortem");
    let st = cl.proc.wait_exit();
    assert!(st.success(), "{st}");
    while let Ok(line) = cl.proc.lines.recv_timeout(std::time::Duration::from_secs(1)) {
        cl.seen.push(serde_json::from_str(&line).unwrap());
    }
    let live = session_outputs(&cl.seen);

    let out = Command::new(CONNLIFE)
        .args(["report", "--json"])
        .arg(&record)
        .output()
        .expect("connlife report");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let replayed: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let replayed = session_outputs(&replayed);
    let _ = std::fs::remove_file(&record);
    assert!(live.iter().any(|v| v["type"] == "postmortem"));
    assert!(live.iter().filter(|v| v["type"] == "finding").count() >= 3);
    assert_eq!(live.len(), replayed.len(), "live:\n{live:#?}\nreplayed:\n{replayed:#?}");
    for (l, r) in live.iter().zip(&replayed) {
        assert_eq!(l, r);
    }
}
