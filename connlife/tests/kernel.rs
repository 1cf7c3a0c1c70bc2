//! Privileged tests of the kernel pipeline and the connection model: the real eBPF programs
//! attached to this kernel, real TCP traffic in a private network namespace, filtered to the
//! test's own pids, with exact owners, fds, state paths, tuples, exchanges and bytes.
mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::Value;

/// "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
const REQUEST_BYTES: u64 = 47;
/// Status line, Content-Length, Connection: keep-alive|close, blank line, "ok\n".
const RESPONSE_KEEPALIVE: u64 = 65;
const RESPONSE_CLOSE: u64 = 60;

fn states(v: &Value) -> Vec<String> {
    v["path"]
        .as_array()
        .expect("path")
        .iter()
        .map(|p| p[0].as_str().unwrap().to_string())
        .collect()
}

fn by_pid(pid: u32) -> impl Fn(&Value) -> bool {
    move |v| v["type"] == "closed" && v["pid"] == pid
}

#[test]
fn client_and_server_processes_get_exact_owners_paths_and_use() {
    let ns = NetNs::new();
    let server = workload(&ns, &["server", "keepalive"], "server");
    let addr = ready_addr(&server);
    let mut client = workload(&ns, &["client", "short", &addr, "3", "100", "--wait-stdin"], "client");
    let mut cl = Connlife::start(&[server.pid(), client.pid()], &["--transitions"]);
    client.go();
    client.wait_line(|l| l == "done 3");
    assert!(client.wait_exit().success());

    let client_side = cl.wait_count(3, by_pid(client.pid()));
    let server_side = cl.wait_count(3, |v| {
        v["type"] == "closed" && v["pid"] == server.pid() && v["role"] == "server"
    });
    let mut client_ports = BTreeSet::new();
    for c in &client_side {
        assert_eq!(c["raddr"], addr.as_str(), "{c}");
        assert_eq!(c["fd"], 3, "the client's only socket fd: {c}");
        assert_eq!(c["role"], "client");
        assert_eq!(c["reason"], "closed_by_us", "{c}");
        assert_eq!(
            states(c),
            ["SYN_SENT", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "CLOSE"],
            "{c}"
        );
        assert_eq!(c["fd_closed"], true);
        assert_eq!(c["exchanges"], counted(1), "{c}");
        assert_eq!(c["bytes_sent"], counted(REQUEST_BYTES), "{c}");
        assert_eq!(c["bytes_received"], counted(RESPONSE_KEEPALIVE), "{c}");
        client_ports.insert(c["laddr"].as_str().unwrap().to_string());
    }
    assert_eq!(client_ports.len(), 3, "three distinct connections");
    for s in &server_side {
        assert_eq!(s["laddr"], addr.as_str(), "{s}");
        assert!(
            client_ports.contains(s["raddr"].as_str().unwrap()),
            "server end pairs with a client end: {s}"
        );
        assert_eq!(
            s["comm"], "connlife-worklo",
            "owner is the server process, not the softirq's task"
        );
        assert!(s["fd"].as_i64().unwrap() > 3, "accepted fd known: {s}");
        assert_eq!(s["reason"], "closed_by_peer", "{s}");
        assert_eq!(
            states(s),
            ["SYN_RECV", "ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSE"],
            "{s}"
        );
        assert_eq!(s["exchanges"], counted(1), "{s}");
        assert_eq!(s["bytes_received"], counted(REQUEST_BYTES), "{s}");
        assert_eq!(s["bytes_sent"], counted(RESPONSE_KEEPALIVE), "{s}");
    }
    // Transitions of each client socket arrive in order, with the owner on every one.
    for port in &client_ports {
        let seq: Vec<(String, String)> = cl
            .of_type("transition")
            .into_iter()
            .filter(|t| t["raddr"] == addr.as_str() && (t["laddr"] == port.as_str() || t["to"] == "SYN_SENT"))
            .filter(|t| t["laddr"] == port.as_str())
            .map(|t| {
                (
                    t["from"].as_str().unwrap_or("?").to_string(),
                    t["to"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            seq,
            [
                ("SYN_SENT", "ESTABLISHED"),
                ("ESTABLISHED", "FIN_WAIT1"),
                ("FIN_WAIT1", "FIN_WAIT2"),
                ("FIN_WAIT2", "CLOSE")
            ]
            .map(|(a, b)| (a.to_string(), b.to_string())),
            "port {port}"
        );
    }
    cl.stop();
}

/// tcplife reports a server-closed socket as `swapper` (or the client) because the last
/// transition runs in softirq; connlife must credit the server.
#[test]
fn server_closes_first_is_credited_to_the_server_not_the_softirq_task() {
    let ns = NetNs::new();
    let server = workload(&ns, &["server", "close"], "server");
    let addr = ready_addr(&server);
    let mut client = workload(&ns, &["client", "short", &addr, "3", "100", "--wait-stdin"], "client");
    let mut cl = Connlife::start(&[server.pid(), client.pid()], &["--transitions"]);
    client.go();
    assert!(client.wait_exit().success());
    let server_side = cl.wait_count(3, |v| v["type"] == "closed" && v["role"] == "server");
    for s in &server_side {
        assert_eq!(s["pid"], server.pid(), "server socket credited to the server: {s}");
        assert_eq!(s["reason"], "closed_by_us", "{s}");
        // FIN_WAIT2, or CLOSING when the client's FIN crosses ours (simultaneous close).
        let path = states(s);
        assert!(
            path == ["SYN_RECV", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "CLOSE"]
                || path == ["SYN_RECV", "ESTABLISHED", "FIN_WAIT1", "CLOSING", "CLOSE"],
            "{s}"
        );
        assert_eq!(s["bytes_sent"], counted(RESPONSE_CLOSE), "{s}");
    }
    let client_side = cl.wait_count(3, by_pid(client.pid()));
    for c in &client_side {
        // Peer's FIN first (CLOSE_WAIT, LAST_ACK) or crossing ours (FIN_WAIT1, CLOSING).
        let path = states(c);
        assert!(
            path == ["SYN_SENT", "ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSE"]
                || path == ["SYN_SENT", "ESTABLISHED", "FIN_WAIT1", "CLOSING", "CLOSE"],
            "{c}"
        );
    }
    // The final transition of every server socket happened in softirq on the client's
    // FIN; it still names the server.
    let to_close: Vec<&Value> = cl
        .of_type("transition")
        .into_iter()
        .filter(|t| t["laddr"] == addr.as_str() && t["to"] == "CLOSE")
        .collect();
    assert_eq!(to_close.len(), 3);
    assert!(to_close.iter().all(|t| t["pid"] == server.pid()), "{to_close:?}");
    cl.stop();
}

/// A process that opened 200 connections before connlife started: all 200 are in the model
/// at once, with the right fds.
#[test]
fn two_hundred_connections_opened_before_start_are_all_known_with_fds() {
    let ns = NetNs::new();
    let server = workload(&ns, &["server", "keepalive"], "server");
    let addr = ready_addr(&server);
    let holder = workload(&ns, &["hold", &addr, "200"], "holder");
    let mut fds = BTreeSet::new();
    loop {
        let line = holder.wait_line(|_| true);
        if line.starts_with("ready") {
            break;
        }
        let fd: i64 = line
            .split_whitespace()
            .nth(1)
            .unwrap()
            .trim_start_matches("fd=")
            .parse()
            .unwrap();
        fds.insert(fd);
    }
    assert_eq!(fds.len(), 200);
    let mut cl = Connlife::start(&[holder.pid()], &["--idle-after", "1s"]);
    let start = cl.of_type("summary")[0].clone();
    assert_eq!(start["by_state"]["ESTABLISHED"], 200, "start-up view: {start}");
    // Whether they were reused before connlife attached is unknown: no established_unreused
    // claim about them (true or silent), however long they idle.
    cl.collect_for(std::time::Duration::from_millis(2500));
    assert!(
        cl.of_type("finding")
            .iter()
            .all(|f| f["kind"] != "established_unreused"),
        "{}",
        cl.dump()
    );
    // Owners and fds, through the report at detach.
    cl.stop();
    let report = cl.of_type("postmortem")[0].clone();
    let group = &report["open_at_end"][0];
    assert_eq!(
        (
            group["state"].as_str(),
            group["count"].as_u64(),
            group["raddr"].as_str()
        ),
        (Some("ESTABLISHED"), Some(200), Some(addr.as_str())),
        "{report}"
    );
    let got: BTreeSet<i64> = group["fds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_i64().unwrap())
        .collect();
    assert_eq!(got, fds, "every pre-existing connection with its fd");
}

/// dup2(new, sock_fd) closes the socket without close(): the owner's fd is gone all the same.
#[test]
fn socket_fd_replaced_by_dup2_counts_as_closed_by_the_owner() {
    let ns = NetNs::new();
    let server = workload(&ns, &["server", "keepalive"], "server");
    let addr = ready_addr(&server);
    let mut client = workload(
        &ns,
        &["client", "dup2", &addr, "2", "100", "--wait-stdin", "--hold"],
        "client",
    );
    let mut cl = Connlife::start(&[client.pid()], &[]);
    client.go();
    client.wait_line(|l| l == "done 2");
    let closed = cl.wait_count(2, by_pid(client.pid()));
    for c in &closed {
        assert_eq!(c["fd_closed"], true, "{c}");
        assert_eq!(c["reason"], "closed_by_us", "{c}");
        assert_eq!(
            states(c),
            ["SYN_SENT", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "CLOSE"],
            "{c}"
        );
    }
    cl.stop();
}

/// Origins on this kernel: connlife finds the task's user registers at the top of its kernel
/// stack (whose size and padding vary by kernel) and walks the frame pointers of the workload
/// (built with them), so a leaked connection names the function that connected, down to
/// `main` (the whole chain, not just the first frames).
#[test]
fn origins_walk_the_user_stack_at_connect() {
    let ns = NetNs::new();
    let TracedDemoClient {
        servers: _servers,
        mut client,
        connlife: mut cl,
    } = traced_demo_client(&ns);
    client.go();
    // close_wait_stuck: established_unreused needs the send/recv tracepoints (6.3+).
    let f = cl.wait_for(|v| v["type"] == "finding" && v["kind"] == "close_wait_stuck");
    assert_eq!(f["origin"]["source"], "connect", "{f}");
    let site = f["origin"]["site"].as_str().unwrap_or_default();
    assert!(site.starts_with("demo_client ("), "{f}");
    let functions: Vec<&str> = f["origin"]["frames"]
        .as_array()
        .map(|frames| frames.iter().filter_map(|fr| fr["function"].as_str()).collect())
        .unwrap_or_default();
    assert!(functions.contains(&"main"), "the walk reaches main: {functions:?}");
    cl.stop();
}

/// The benchmark's hook floor (`connlife floor --hooks`, what `cargo xtask bench` compares
/// connlife with) attaches on this kernel and its state program counts every state change:
/// 10 per connection closed by its client (5 per end), host noise only adds.
#[test]
fn hook_floor_attaches_every_hook_and_counts_state_changes() {
    let ns = NetNs::new();
    let server = workload(&ns, &["server", "keepalive"], "server");
    let addr = ready_addr(&server);
    let mut client = workload(&ns, &["client", "short", &addr, "5", "0", "--wait-stdin"], "client");
    let mut cmd = std::process::Command::new(CONNLIFE);
    cmd.args(["floor", "--hooks"]);
    let mut floor = Proc::spawn(cmd, "floor");
    floor.wait_err_line(|l| l == "ready");
    client.go();
    client.wait_line(|l| l == "done 5");
    assert!(client.wait_exit().success());
    // The server's ends reach CLOSE once it has read the client's FIN; give it that moment.
    std::thread::sleep(std::time::Duration::from_millis(300));
    floor.signal(libc::SIGINT);
    let line = floor.wait_line(|l| l.contains(r#""type":"floor""#));
    let count = serde_json::from_str::<Value>(&line).expect("floor JSON")["count"]
        .as_u64()
        .expect("count");
    assert!(count >= 50, "5 connections, 10 state changes each: counted {count}");
    assert!(floor.wait_exit().success());
}
