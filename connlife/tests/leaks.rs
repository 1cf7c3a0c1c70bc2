//! The user's story with real Go programs (Debian's golang-go, net/http): a new
//! http.Transport per request, a response body never closed against a server that closes,
//! the two healthy fixes, and the leaky client dying of EMFILE. Asserted on `--json` output.
mod common;

use std::{collections::BTreeSet, process::Command, time::Duration};

use common::*;

#[test]
fn go_transport_per_request_shows_a_growing_unreused_group() {
    let ns = NetNs::new();
    let (_server, addr) = go_server(&ns, "keepalive");
    let mut client = go_client(
        &ns,
        &addr,
        "transport-per-request",
        &["-count", "0", "-interval", "150ms"],
    );
    let mut cl = Connlife::start(&[client.pid()], &["--idle-after", "1s", "--group-min", "3"]);
    client.go();
    let big = cl.wait_for(|v| v["type"] == "group" && v["count"].as_u64() >= Some(12));
    assert_eq!(big["pid"], client.pid());
    assert_eq!(big["raddr"], addr.as_str());
    assert!(big["growth_per_min"].as_f64().unwrap() > 0.0, "growing: {big}");
    let counts: Vec<u64> = cl
        .of_type("group")
        .iter()
        .map(|g| g["count"].as_u64().unwrap())
        .collect();
    assert!(counts.first() < counts.last(), "the group grows over time: {counts:?}");
    let findings: Vec<_> = cl
        .of_type("finding")
        .into_iter()
        .filter(|f| f["kind"] == "established_unreused")
        .collect();
    let fds: BTreeSet<i64> = findings.iter().map(|f| f["fd"].as_i64().expect("fd")).collect();
    assert_eq!(fds.len(), findings.len(), "one fd per leaked connection");
    for f in &findings {
        assert_eq!(f["pid"], client.pid(), "{f}");
        assert_eq!(f["exchanges"], 1, "one request, then never reused: {f}");
        assert_eq!(f["state"], "ESTABLISHED");
        assert_eq!(f["raddr"], addr.as_str());
    }
    cl.stop();
}

#[test]
fn go_body_never_closed_against_closing_server_is_close_wait_stuck() {
    let ns = NetNs::new();
    let (_server, addr) = go_server(&ns, "close");
    let mut client = go_client(
        &ns,
        &addr,
        "body-not-closed",
        &["-count", "5", "-interval", "100ms", "-hold", "-1s"],
    );
    let mut cl = Connlife::start(&[client.pid()], &["--close-wait-after", "1s"]);
    client.go();
    let stuck = cl.wait_count(5, |v| v["type"] == "finding" && v["kind"] == "close_wait_stuck");
    let fds: BTreeSet<i64> = stuck.iter().map(|f| f["fd"].as_i64().expect("fd")).collect();
    assert_eq!(fds.len(), 5);
    for f in &stuck {
        assert_eq!(
            (f["pid"].as_u64(), f["state"].as_str()),
            (Some(client.pid() as u64), Some("CLOSE_WAIT")),
            "{f}"
        );
        assert_eq!(f["raddr"], addr.as_str());
    }
    cl.stop();
}

/// Healthy programs must give no finding, while connlife demonstrably saw their traffic.
#[test]
fn go_shared_client_and_no_keepalive_client_give_no_findings() {
    for (mode, expect_closed) in [("shared", false), ("no-keepalive", true)] {
        let ns = NetNs::new();
        let (_server, addr) = go_server(&ns, "keepalive");
        let mut client = go_client(
            &ns,
            &addr,
            mode,
            &["-count", "15", "-interval", "100ms", "-hold", "-1s"],
        );
        let mut cl = Connlife::start(
            &[client.pid()],
            &["--idle-after", "1s", "--close-wait-after", "1s", "--interval", "1s"],
        );
        client.go();
        client.wait_line(|l| l.starts_with("done"));
        // Well past both thresholds.
        cl.collect_for(Duration::from_secs(4));
        let findings = cl.of_type("finding");
        assert!(findings.is_empty(), "{mode}: healthy client flagged: {findings:?}");
        if expect_closed {
            let closed = cl
                .of_type("closed")
                .into_iter()
                .filter(|c| c["pid"] == client.pid())
                .count();
            assert!(
                closed >= 14,
                "{mode}: connlife saw the short connections close ({closed})"
            );
        } else {
            let last = cl.of_type("summary").last().cloned().cloned().unwrap();
            assert_eq!(
                last["by_state"]["ESTABLISHED"], 1,
                "{mode}: one pooled connection: {last}"
            );
        }
        cl.stop();
    }
}

#[test]
/// The seed's fast death: the client dies of EMFILE long before `--idle-after` (default 60 s)
/// would flag anything; the verdict names the pattern from what it held at death.
fn go_leaky_client_dies_of_emfile_and_the_postmortem_names_the_leak() {
    let ns = NetNs::new();
    let (_server, addr) = go_server(&ns, "keepalive");
    // Go raises the soft limit to the hard one at start: lower both.
    let mut cmd = ns.command("sh");
    let client_bin = go_binary("client");
    cmd.args([
        "-c",
        &format!(
            "ulimit -n 64 && exec {} -url http://{addr}/ -mode transport-per-request -interval 50ms -exit-on-error -wait-stdin",
            client_bin.display()
        ),
    ]);
    let mut client = Proc::spawn(cmd, "go-client-emfile");
    let record = std::env::temp_dir().join(format!("connlife-record-{}.jsonl", std::process::id()));
    let mut cl = Connlife::start(&[client.pid()], &["--record", record.to_str().unwrap()]);
    client.go();
    let pm = cl.wait_for(|v| v["type"] == "postmortem");
    let st = client.wait_exit();
    assert_eq!(st.code(), Some(3), "the Go client exits on its first error (EMFILE)");
    assert_eq!(pm["pid"], client.pid());
    assert_eq!(pm["ending"], "exited with status 3", "{pm}");
    let ex = &pm["fd_exhausted"][0];
    assert_eq!(
        (ex["errno"].as_str(), ex["syscall"].as_str()),
        (Some("EMFILE"), Some("socket")),
        "{pm}"
    );
    assert_eq!(pm["fd_limit"], 64);
    let top = &pm["open_at_end"][0];
    assert_eq!(
        (top["state"].as_str(), top["raddr"].as_str()),
        (Some("ESTABLISHED"), Some(addr.as_str())),
        "{pm}"
    );
    assert!(
        top["count"].as_u64().unwrap() >= 40,
        "most fds are the leaked connections: {pm}"
    );
    let verdict = pm["verdict"].as_str().unwrap();
    assert!(verdict.contains("ran out of file descriptors"), "{verdict}");
    assert!(
        verdict.contains(&format!("ESTABLISHED connections to {addr}")) && verdict.contains("reuse one client"),
        "{verdict}"
    );
    assert_eq!(pm["patterns"][0]["kind"], "unreused_keepalive", "{pm}");
    assert_eq!(
        pm["findings_raised"],
        serde_json::json!({}),
        "no threshold had passed: {pm}"
    );
    assert!(
        pm["timeline"].as_array().unwrap().len() >= 2,
        "the climb is there: {pm}"
    );
    // connlife exits by itself once its only pid is gone.
    assert!(cl.proc.wait_exit().success());

    // The same post-mortem from the recording.
    let out = Command::new(CONNLIFE)
        .args(["report", "--json"])
        .arg(&record)
        .output()
        .expect("connlife report");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let replayed = String::from_utf8(out.stdout).unwrap();
    let rpm: serde_json::Value = replayed
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "postmortem")
        .expect("postmortem in report");
    for key in [
        "pid",
        "ending",
        "fd_exhausted",
        "open_at_end",
        "verdict",
        "fd_limit",
        "peak_fds",
    ] {
        assert_eq!(rpm[key], pm[key], "replayed {key}");
    }
    let _ = std::fs::remove_file(record);
}
