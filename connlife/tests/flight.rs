//! The agent's flight recorder: nobody runs `connlife --pid` when a service dies at night, so
//! the agent writes the post-mortem itself (a JSON line, a file in --postmortem-dir that
//! `connlife report` renders, as text and as a page), within bounds however many processes
//! come and go.
mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

fn metrics(port: u16) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = write!(s, "GET /metrics HTTP/1.0\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The value of one metric line (`name{labels} value`).
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

struct Agent {
    proc: Proc,
    port: u16,
    dir: PathBuf,
}

fn agent(extra: &[&str]) -> Agent {
    require_root();
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("connlife-postmortems-{}-{port}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cmd = Command::new(CONNLIFE);
    cmd.args(["agent", "--listen", &format!("127.0.0.1:{port}"), "--interval", "1s"])
        .arg("--postmortem-dir")
        .arg(&dir)
        .args(extra);
    let proc = Proc::spawn(cmd, "agent");
    let deadline = Instant::now() + PATIENCE;
    while !metrics(port).contains("connlife_postmortems_total") {
        assert!(Instant::now() < deadline, "the agent never served its metrics");
        std::thread::sleep(Duration::from_millis(200));
    }
    Agent { proc, port, dir }
}

fn files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut v: Vec<(PathBuf, u64)> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| (e.path(), e.metadata().unwrap().len())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// The seed's client under `ulimit -n 64` dies of EMFILE while the agent runs with its default
/// thresholds: the agent writes its post-mortem, naming EMFILE and the unreused pattern.
#[test]
fn agent_writes_the_postmortem_of_a_process_that_ran_out_of_fds() {
    let a = agent(&[]);
    let ns = NetNs::new();
    let mut server = ns.command(go_binary("server").to_str().unwrap());
    server.args(["-mode", "keepalive"]);
    let server = Proc::spawn(server, "go-server");
    let addr = ready_addr(&server);
    let mut cmd = ns.command("sh");
    cmd.args([
        "-c",
        &format!(
            "ulimit -n 64 && exec {} -url http://{addr}/ -mode transport-per-request -interval 50ms -exit-on-error -wait-stdin",
            go_binary("client").display()
        ),
    ]);
    let mut client = Proc::spawn(cmd, "go-client-emfile");
    client.go();
    assert_eq!(
        client.wait_exit().code(),
        Some(3),
        "the client dies of its first error (EMFILE)"
    );
    let pm: Value = loop {
        let line = a.proc.wait_line(|l| l.contains("\"type\":\"postmortem\""));
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["pid"] == client.pid() {
            break v;
        }
    };
    assert_eq!(pm["reason"], "fd_exhausted", "{pm}");
    assert_eq!(pm["fd_exhausted"][0]["errno"], "EMFILE", "{pm}");
    let p = &pm["patterns"][0];
    assert_eq!(
        (p["kind"].as_str(), p["raddr"].as_str()),
        (Some("unreused_keepalive"), Some(addr.as_str())),
        "{pm}"
    );
    assert!(p["count"].as_u64().unwrap() >= 40, "{pm}");
    assert_eq!(pm["fd_limit"], 64, "the fds were read at the EMFILE moment: {pm}");
    let cgroup = pm["cgroup"].as_str().unwrap_or("");
    assert!(!cgroup.is_empty() || pm["cgroup"].is_null(), "{pm}");

    // The file renders with `connlife report`, as text and as a page.
    let written = files(&a.dir);
    let file = written
        .iter()
        .find(|(p, _)| p.to_string_lossy().ends_with(&format!("-{}.json", client.pid())))
        .unwrap_or_else(|| panic!("no post-mortem file for {} in {written:?}", client.pid()));
    let html = a.dir.join("page.html");
    let out = Command::new(CONNLIFE)
        .arg("report")
        .arg(&file.0)
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ran out of file descriptors"), "{text}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains(&client.pid().to_string()) && page.contains("EMFILE"));
    let deadline = Instant::now() + PATIENCE;
    let series = "connlife_postmortems_total{reason=\"fd_exhausted\"}";
    while metric(&metrics(a.port), series).unwrap_or(0.0) < 1.0 {
        assert!(Instant::now() < deadline, "{series} never counted it");
        std::thread::sleep(Duration::from_millis(300));
    }
    let _ = std::fs::remove_dir_all(&a.dir);
}

/// 2,000 short-lived processes with connections come and go, each killed holding them: the
/// recorder stays under its memory bound and the directory under its size cap.
#[test]
fn flight_recorder_and_postmortem_dir_stay_bounded() {
    let a = agent(&[
        "--postmortem-min-conns",
        "2",
        "--postmortem-keep",
        "50",
        "--postmortem-max-size",
        "1M",
    ]);
    let ns = NetNs::new();
    let server = workload(&ns, &["server", "keepalive"], "server");
    let addr = ready_addr(&server);
    let rounds = 2000;
    for i in 0..rounds {
        let holder = workload(&ns, &["hold", &addr, "2"], "holder");
        holder.wait_line(|l| l == "ready 2");
        drop(holder); // SIGKILL while holding 2 connections
        if i % 500 == 499 {
            eprintln!("{} processes came and went", i + 1);
        }
    }
    let deadline = Instant::now() + PATIENCE;
    let m = loop {
        let m = metrics(a.port);
        let n = metric(&m, "connlife_postmortems_total{reason=\"killed_holding\"}").unwrap_or(0.0);
        if n >= rounds as f64 * 0.9 || Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let written = metric(&m, "connlife_postmortems_total{reason=\"killed_holding\"}").unwrap();
    let recorder = metric(&m, "connlife_flight_recorder_bytes").unwrap();
    let in_dir = files(&a.dir);
    let size: u64 = in_dir.iter().map(|f| f.1).sum();
    eprintln!(
        "post-mortems: {written}; directory: {} files, {size} bytes; recorder: {recorder} bytes",
        in_dir.len()
    );
    assert!(
        written >= rounds as f64 * 0.9,
        "most killed holders got a post-mortem: {written}"
    );
    assert!(in_dir.len() <= 50, "{}", in_dir.len());
    assert!(size <= 1 << 20, "{size}");
    assert!(recorder < (4 << 20) as f64, "{recorder}");
    let _ = std::fs::remove_dir_all(&a.dir);
}
