//! The agent with a real Prometheus (Debian's `prometheus`) scraping it on loopback while a
//! real Go client leaks CLOSE_WAIT sockets: the stuck-connection metric rises and the
//! documented alert rule (deploy/prometheus/connlife-alerts.yml) fires. The agent runs as an
//! unprivileged user (uid 65534) with only the capabilities the docs list, and an unprivileged
//! local user holding 2,000 slow connections to its endpoint does not take it down.
mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, out.split_once("\r\n\r\n")?.1.to_string()))
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Instant query through Prometheus' HTTP API; the sum of the result vector (None if empty).
fn prom_value(port: u16, query: &str) -> Option<f64> {
    let (_, body) = http_get(port, &format!("/api/v1/query?query={}", encode(query)))?;
    let v: Value = serde_json::from_str(&body).ok()?;
    let result = v["data"]["result"].as_array()?;
    if result.is_empty() {
        return None;
    }
    Some(
        result
            .iter()
            .filter_map(|r| r["value"][1].as_str()?.parse::<f64>().ok())
            .sum(),
    )
}

fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn prometheus_scrapes_the_agent_and_the_close_wait_alert_fires() {
    require_root();
    let (agent_port, prom_port) = (free_port(), free_port());
    // Least privilege: uid 65534 with the documented capabilities, no root.
    let caps = "+bpf,+perfmon,+sys_admin,+sys_ptrace,+dac_read_search,+syslog";
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        &format!("--inh-caps={caps}"),
        &format!("--ambient-caps={caps}"),
        &runnable_by_anyone(CONNLIFE),
        "agent",
        "--listen",
        &format!("127.0.0.1:{agent_port}"),
        "--interval",
        "1s",
    ]);
    cmd.args(["--close-wait-after", "2s", "--idle-after", "1h", "--top-n", "100"]);
    let agent = Proc::spawn(cmd, "agent");
    until("agent /healthz", || {
        http_get(agent_port, "/healthz").filter(|(s, _)| *s == 200)
    });
    let uid = std::fs::read_to_string(format!("/proc/{}/status", agent.pid())).unwrap();
    assert!(
        uid.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("65534")),
        "the agent runs as uid 65534: {uid}"
    );
    // Known label values exist before anything happens: "none" is not "not scraped".
    let metrics = until("the first metrics", || {
        http_get(agent_port, "/metrics")
            .map(|(_, body)| body)
            .filter(|b| b.contains("connlife_model_connections"))
    });
    for series in [
        "connlife_stuck_connections{kind=\"unaccepted\",comm=\"none\",container=\"\"} 0",
        "connlife_lost_events_total{cause=\"recursion_miss\"}",
        "connlife_model_corrections_total{kind=\"vanished\"}",
        "connlife_errors_total{op=\"snapshot\"} 0",
    ] {
        assert!(metrics.contains(series), "{series} missing:\n{metrics}");
    }

    // A hostile local user holds 2,000 slow connections to the endpoint.
    // The checkout may not be readable by uid 65534 (a clone in a 0700 mktemp dir): the
    // script goes to a file of its own in /tmp.
    let script = std::env::temp_dir().join(format!("connlife-slow-clients-{}.py", std::process::id()));
    std::fs::write(&script, include_str!("programs/slow_clients.py")).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let mut slow = Command::new("setpriv");
    slow.args(["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3"])
        .arg(&script)
        .args([format!("127.0.0.1:{agent_port}"), "2000".into()]);
    let slow = Proc::spawn(slow, "slow-clients");
    slow.wait_line(|l| l.starts_with("ready"));
    for path in ["/metrics", "/healthz"] {
        let t = Instant::now();
        let (status, _) = until("an answer under the slow-connection flood", || {
            http_get(agent_port, path)
        });
        eprintln!(
            "{path} answered {status} in {:?} under 2,000 slow connections",
            t.elapsed()
        );
        assert_eq!(status, 200);
    }

    // Prometheus with the documented rules, `for:` shortened so the test does not wait 10 min.
    let dir = std::env::temp_dir().join(format!("connlife-prom-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rules_src = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/prometheus/connlife-alerts.yml");
    let rules = std::fs::read_to_string(rules_src).expect("deploy/prometheus/connlife-alerts.yml");
    let fast: String = rules
        .lines()
        .map(|l| match l.find("for:") {
            Some(at) if l[..at].trim().is_empty() => format!("{}for: 1s", &l[..at]),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("rules.yml"), fast).unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\nscrape_configs:\n  - job_name: connlife\n    static_configs:\n      - targets: ['127.0.0.1:{agent_port}']\n"
        ),
    )
    .unwrap();
    let mut prom = Command::new("prometheus");
    prom.arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"));
    let _prom = Proc::spawn(prom, "prometheus");
    until("prometheus to scrape the agent", || {
        prom_value(prom_port, "up{job=\"connlife\"}").filter(|v| *v == 1.0)
    });

    let ns = NetNs::new();
    let mut server = ns.command(go_binary("server").to_str().unwrap());
    server.args(["-mode", "close"]);
    let server = Proc::spawn(server, "go-server");
    let addr = ready_addr(&server);
    let query = "sum(connlife_stuck_connections{kind=\"close_wait_stuck\",comm=\"client\"})";
    assert_eq!(
        prom_value(prom_port, query).unwrap_or(0.0),
        0.0,
        "nothing stuck before the leak"
    );
    let mut client = ns.command(go_binary("client").to_str().unwrap());
    client.args([
        "-url",
        &format!("http://{addr}/"),
        "-mode",
        "body-not-closed",
        "-count",
        "4",
    ]);
    client.args(["-interval", "100ms", "-hold", "-1s"]);
    let client = Proc::spawn(client, "go-client");

    let stuck = until("the stuck metric to reach 4", || {
        prom_value(prom_port, query).filter(|v| *v >= 4.0)
    });
    assert_eq!(stuck, 4.0);
    let alert = until("ConnlifeCloseWaitStuck to fire", || {
        let (_, body) = http_get(prom_port, "/api/v1/alerts")?;
        let v: Value = serde_json::from_str(&body).ok()?;
        v["data"]["alerts"]
            .as_array()?
            .iter()
            // The agent sees the whole host: other processes' alerts may fire too.
            .find(|a| {
                a["labels"]["alertname"] == "ConnlifeCloseWaitStuck"
                    && a["state"] == "firing"
                    && a["labels"]["comm"] == "client"
            })
            .cloned()
    });
    assert_eq!(alert["labels"]["kind"], "close_wait_stuck", "{alert}");
    let lost = prom_value(prom_port, "sum(connlife_lost_events_total)").expect("lost events exported");
    let by_cause = || {
        http_get(
            prom_port,
            &format!("/api/v1/query?query={}", encode("connlife_lost_events_total > 0")),
        )
        .map_or_else(String::new, |(_, body)| body)
    };
    assert_eq!(lost, 0.0, "no events lost at this rate: {}", by_cause());
    // The JSON log lines name the findings' owner with its cgroup (and container, if any).
    let cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", client.pid())).unwrap();
    let expected = match cgroup.lines().find_map(|l| l.strip_prefix("0::")) {
        Some(path) if !path.is_empty() => Value::from(path),
        _ => Value::Null,
    };
    let logged: Vec<Value> = agent
        .lines
        .try_iter()
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect();
    let mine: Vec<&Value> = logged
        .iter()
        .filter(|v| v["type"] == "finding" && v["kind"] == "close_wait_stuck" && v["pid"] == client.pid())
        .collect();
    assert_eq!(mine.len(), 4, "one finding line per stuck socket: {logged:?}");
    assert!(
        logged.iter().all(|v| !v["laddr"]
            .as_str()
            .is_some_and(|l| l.ends_with(&format!(":{agent_port}")))),
        "the agent never reports its own endpoint's connections: {logged:?}"
    );
    drop(slow);
    let _ = std::fs::remove_file(&script);
    assert!(mine.iter().all(|f| f["cgroup"] == expected), "{mine:?}");
    drop(agent);
    let _ = std::fs::remove_dir_all(dir);
}
