//! Issue 13, where connections were opened, with real programs: Go net/http clients (a new
//! Transport per request, a body never closed behind the user's own dial function, the
//! incident's seed code with `Transport{Dial: dialTimeout}`, a healthy shared client), and a C
//! client built with frame pointers, then stripped, and a stripped Go client (named from Go's
//! own function table). Asserted on `--json` output: the `origin`
//! of findings, groups and the post-mortem, and the start-up line on stderr.
mod common;

use std::{path::Path, process::Command};

use common::*;
use serde_json::Value;

const HINT_TRANSPORT_PER_REQUEST: &str =
    "one http.Transport made per request at this call site: reuse one client (or Transport), or set DisableKeepAlives";

/// Go origins need uprobes (the `uprobe` perf PMU); everything else here is always present.
fn uprobes_available() -> bool {
    let yes = Path::new("/sys/bus/event_source/devices/uprobe").exists();
    if !yes {
        eprintln!("skipping: this kernel has no uprobe PMU (CONFIG_UPROBE_EVENTS), so no Go request origins");
    }
    yes
}

/// The line (1-based) of the first line containing `needle` after the line starting with
/// `decl` in the Go client's source: where connlife must place a frame of that function.
fn client_line(decl: &str, needle: &str) -> usize {
    source_line("../workloads/go/client/main.go", decl, needle)
}

/// The same in any source file (`path` relative to the crate).
fn source_line(path: &str, decl: &str, needle: &str) -> usize {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let src = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let lines: Vec<&str> = src.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with(decl))
        .unwrap_or_else(|| panic!("{decl:?} not in {}", path.display()));
    start
        + 1
        + lines[start..]
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} not after {decl:?} in {}", path.display()))
}

/// The frames of an origin's site, as printed (`function (file:line)`), innermost first.
fn site_frames(origin: &Value) -> Vec<String> {
    origin["site"]
        .as_str()
        .unwrap_or_else(|| panic!("origin without a site: {origin}"))
        .split(" <- ")
        .map(str::to_string)
        .collect()
}

/// connlife said at start-up that it put the Go uprobes on this binary.
fn wait_go_traced(cl: &Connlife) -> String {
    cl.proc.wait_err_line(|l| l.contains("Go net/http origins traced in"))
}

/// A new Transport + Client per call (`main.post` calls `client.Do`, from the mode's closure
/// `main.main.func1`): the group's origin is that request's code, and it counts as many
/// Transports as connections, so the hint names the transport-per-request bug.
#[test]
fn transport_per_request_group_names_the_posting_function_and_one_transport_per_connection() {
    if !uprobes_available() {
        return;
    }
    let ns = NetNs::new();
    let (_server, addr) = go_server(&ns, "keepalive");
    let mut client = go_client(
        &ns,
        &addr,
        "transport-per-request",
        &["-count", "0", "-interval", "300ms"],
    );
    let mut cl = Connlife::start(&[client.pid()], &["--idle-after", "2s", "--interval", "1s"]);
    let traced = wait_go_traced(&cl);
    assert!(traced.contains(&format!("pid {}", client.pid())), "{traced}");
    client.go();
    let g = cl.wait_for(|v| v["type"] == "group" && v["count"].as_u64() >= Some(5));
    let count = g["count"].as_u64().unwrap();
    let o = &g["origin"];
    assert_eq!(o["source"], "go_request", "{g}");
    let want = [
        format!("main.post (main.go:{})", client_line("func post(", "client.Do(req)")),
        format!(
            "main.main.func1 (main.go:{})",
            client_line("\tcase \"transport-per-request\":", "return post(c, *url, n, true)")
        ),
    ];
    assert_eq!(site_frames(o), want, "{g}");
    assert_eq!(g["from_origin"].as_u64(), Some(count), "all share the site: {g}");
    assert_eq!(
        o["transports"].as_u64(),
        Some(count),
        "one Transport per connection: {g}"
    );
    assert_eq!(g["hint"], HINT_TRANSPORT_PER_REQUEST, "{g}");
    let frames = o["frames"].as_array().expect("frames");
    assert!(
        frames
            .iter()
            .any(|f| f["function"] == "net/http.(*Transport).roundTrip"),
        "the request's stack at roundTrip: {o}"
    );
    // Each finding of the group carries the same origin.
    let findings: Vec<&Value> = cl
        .of_type("finding")
        .into_iter()
        .filter(|f| f["kind"] == "established_unreused")
        .collect();
    assert!(findings.len() as u64 >= count, "{}", cl.dump());
    for f in &findings {
        assert_eq!(f["origin"]["source"], "go_request", "{f}");
        assert_eq!(site_frames(&f["origin"]), want, "{f}");
        assert!(f["origin"]["transports"].as_u64() >= Some(1), "{f}");
    }
    eprintln!("group origin: {} (transports {})", o["site"], o["transports"]);
    cl.stop();
}

/// One shared client whose Transport dials through the user's own `main.dialWithLog`; the
/// body is dropped by `main.postAndForget`, against a server that closes. The dial runs on
/// net/http's goroutine through dialWithLog, but the code to blame is the request's.
#[test]
fn body_not_closed_with_own_dialer_names_the_request_not_the_dial_helper() {
    if !uprobes_available() {
        return;
    }
    let ns = NetNs::new();
    let (_server, addr) = go_server(&ns, "close");
    let mut client = go_client(
        &ns,
        &addr,
        "body-not-closed-own-dialer",
        &["-count", "5", "-interval", "100ms", "-hold", "-1s"],
    );
    let mut cl = Connlife::start(&[client.pid()], &["--close-wait-after", "1s", "--interval", "1s"]);
    wait_go_traced(&cl);
    client.go();
    let stuck = cl.wait_count(5, |v| v["type"] == "finding" && v["kind"] == "close_wait_stuck");
    let first = format!(
        "main.postAndForget (main.go:{})",
        client_line("func postAndForget(", "client.Do(req)")
    );
    for f in &stuck {
        let o = &f["origin"];
        assert_eq!(o["source"], "go_request", "{f}");
        let site = site_frames(o);
        assert_eq!(site[0], first, "{f}");
        assert!(site.len() == 2 && site[1].starts_with("main.main.func"), "{f}");
        assert!(
            site.iter().all(|s| !s.contains("dialWithLog")),
            "the dial helper is not the origin: {f}"
        );
        // One shared client: one Transport, however many connections.
        assert_eq!(o["transports"], 1, "{f}");
    }
    eprintln!("CLOSE_WAIT origin: {}", stuck[0]["origin"]["site"]);
    cl.stop();
}

/// The incident's code: `main.sendRequest` makes `Transport{Dial: dialTimeout}` and a Client
/// per request. The origin is sendRequest, not the dial function.
#[test]
fn seed_code_group_names_send_request_not_dial_timeout() {
    if !uprobes_available() {
        return;
    }
    let ns = NetNs::new();
    let (_server, addr) = go_server(&ns, "keepalive");
    let mut client = go_client(&ns, &addr, "seed", &["-count", "0", "-interval", "300ms"]);
    let mut cl = Connlife::start(&[client.pid()], &["--idle-after", "2s", "--interval", "1s"]);
    wait_go_traced(&cl);
    client.go();
    let g = cl.wait_for(|v| v["type"] == "group" && v["count"].as_u64() >= Some(5));
    let count = g["count"].as_u64().unwrap();
    let o = &g["origin"];
    assert_eq!(o["source"], "go_request", "{g}");
    let site = site_frames(o);
    assert_eq!(
        site[0],
        format!(
            "main.sendRequest (main.go:{})",
            client_line("func sendRequest(", "client.Do(req)")
        ),
        "{g}"
    );
    assert!(site.iter().all(|s| !s.contains("dialTimeout")), "{g}");
    assert_eq!(g["from_origin"].as_u64(), Some(count), "{g}");
    assert_eq!(o["transports"].as_u64(), Some(count), "{g}");
    assert_eq!(g["hint"], HINT_TRANSPORT_PER_REQUEST, "{g}");
    eprintln!("seed group origin: {} (transports {})", o["site"], o["transports"]);
    cl.stop();
}

/// The seed's death: EMFILE with the fd limit at 64. The post-mortem names where the held
/// connections were opened and how many Transports made them.
#[test]
fn seed_code_dies_of_emfile_and_the_postmortem_names_send_request() {
    if !uprobes_available() {
        return;
    }
    let ns = NetNs::new();
    let (_server, addr) = go_server(&ns, "keepalive");
    let mut cmd = ns.command("sh");
    cmd.args([
        "-c",
        &format!(
            "ulimit -n 64 && exec {} -url http://{addr}/ -mode seed -interval 50ms -exit-on-error -wait-stdin",
            go_binary("client").display()
        ),
    ]);
    let mut client = Proc::spawn(cmd, "go-client-seed-emfile");
    let mut cl = Connlife::start(&[client.pid()], &[]);
    wait_go_traced(&cl);
    client.go();
    let pm = cl.wait_for(|v| v["type"] == "postmortem");
    assert_eq!(client.wait_exit().code(), Some(3), "EMFILE ends the seed client");
    let site0 = format!(
        "main.sendRequest (main.go:{})",
        client_line("func sendRequest(", "client.Do(req)")
    );
    let top = &pm["open_at_end"][0];
    let count = top["count"].as_u64().unwrap();
    assert!(count >= 40, "most fds are the leaked connections: {pm}");
    assert_eq!(top["origin"]["source"], "go_request", "{pm}");
    assert_eq!(site_frames(&top["origin"])[0], site0, "{pm}");
    assert_eq!(top["origin"]["transports"].as_u64(), Some(count), "{pm}");
    let p = &pm["patterns"][0];
    assert_eq!(p["kind"], "unreused_keepalive", "{pm}");
    assert!(p["origin"].as_str().unwrap_or("").starts_with(&site0), "{pm}");
    assert_eq!(p["transports"].as_u64(), Some(count), "{pm}");
    assert_eq!(p["hint"], HINT_TRANSPORT_PER_REQUEST, "{pm}");
    let verdict = pm["verdict"].as_str().unwrap();
    assert!(
        verdict.contains(&format!("opened from {site0}")) && verdict.contains(&format!("({count} http.Transports)")),
        "{verdict}"
    );
    eprintln!("verdict: {verdict}");
    assert!(cl.proc.wait_exit().success());
}

/// The C client opens its connections with `open_connection()` (which calls connect()) from
/// `leaky_connect_loop()` from `main()`, then a stripped copy of it: the origin is the
/// program's own code, or its module and offset once stripped.
#[test]
fn c_client_with_frame_pointers_then_stripped() {
    let Some(bin) = c_binary("origin_client") else {
        return;
    };
    let stripped = bin.with_file_name("origin_client.stripped");
    let st = Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(&bin)
        .status()
        .expect("strip");
    assert!(st.success());
    for (path, is_stripped) in [(&bin, false), (&stripped, true)] {
        let path = path.to_str().unwrap();
        let ns = NetNs::new();
        let (_server, addr) = go_server(&ns, "keepalive");
        let (ip, port) = addr.rsplit_once(':').unwrap();
        let mut client = Proc::spawn(
            {
                let mut c = ns.command(path);
                c.args([ip, port, "4"]);
                c
            },
            if is_stripped { "c-client-stripped" } else { "c-client" },
        );
        let mut cl = Connlife::start(&[client.pid()], &["--idle-after", "2s", "--interval", "1s"]);
        client.go();
        client.wait_line(|l| l.starts_with("done"));
        let found = cl.wait_count(4, |v| v["type"] == "finding" && v["kind"] == "established_unreused");
        for f in &found {
            let o = &f["origin"];
            assert_eq!(o["source"], "connect", "{f}");
            assert!(
                o.get("transports").is_none(),
                "transports are for Go requests only: {f}"
            );
            let site = site_frames(o);
            assert!(
                !site[0].contains("libc") && !site[0].starts_with("connect") && !site[0].starts_with("__"),
                "the site is the program's, not libc's: {f}"
            );
            let frames = o["frames"].as_array().unwrap();
            let own: Vec<&Value> = frames.iter().filter(|fr| fr["module"] == path).collect();
            assert!(!own.is_empty(), "frames of the program itself: {f}");
            if is_stripped {
                // module+0xOFFSET for the program's own frames, no names.
                assert!(
                    site.len() == 2 && site.iter().all(|s| s.starts_with(&format!("{path}+0x"))),
                    "stripped: module+offset: {f}"
                );
                assert!(own.iter().all(|fr| fr.get("function").is_none()), "{f}");
            } else {
                // With frame pointers the kernel walks from connect()'s frame: glibc's
                // connect wrapper keeps no frame, so the return address into
                // open_connection() (on the stack, not in a frame) is skipped and the first
                // frame of the program is its caller, leaky_connect_loop().
                // Seen here (glibc 2.36): `leaky_connect_loop (origin_client.c:78) <- main
                // (origin_client.c:102)`, the frames __libc_connect, leaky_connect_loop, main,
                // __libc_start_call_main. Should connlife ever recover the frameless caller,
                // open_connection's connect() line is the answer.
                let c = "tests/programs/origin_client.c";
                let connect = format!(
                    "open_connection (origin_client.c:{})",
                    source_line(c, "static int open_connection(", "connect(fd")
                );
                let in_loop = format!(
                    "leaky_connect_loop (origin_client.c:{})",
                    source_line(c, "static void leaky_connect_loop(", "open_connection(ip, port)")
                );
                let in_main = format!(
                    "main (origin_client.c:{})",
                    source_line(c, "int main(", "leaky_connect_loop(argv[1]")
                );
                assert!(
                    site == [in_loop.clone(), in_main] || site == [connect, in_loop],
                    "the site names the program's own functions at their calls: {f}"
                );
                assert!(own.iter().any(|fr| fr["function"] == "main"), "{f}");
            }
        }
        let o = &found[0]["origin"];
        eprintln!(
            "{} site: {}\n  frames: {}",
            if is_stripped { "stripped" } else { "C" },
            o["site"],
            o["frames"]
                .as_array()
                .unwrap()
                .iter()
                .map(|fr| match (fr["function"].as_str(), fr["module"].as_str()) {
                    (Some(func), m) => format!("{func} [{}]", m.unwrap_or("?")),
                    (None, m) => format!("{}+{:#x}", m.unwrap_or("?"), fr["offset"].as_u64().unwrap_or(0)),
                })
                .collect::<Vec<_>>()
                .join(" <- ")
        );
        // The group: same origin for all four, no Transport count for a C program.
        let g = cl.wait_for(|v| v["type"] == "group" && v["count"] == 4);
        assert_eq!(g["origin"]["site"], o["site"], "{g}");
        assert_eq!(g["from_origin"], 4, "{g}");
        assert!(g["origin"].get("transports").is_none(), "{g}");
        cl.stop();
    }
    let _ = std::fs::remove_dir_all(bin.parent().unwrap());
}

/// A healthy shared client: no finding at all while origins are on.
#[test]
fn healthy_shared_client_gives_no_findings_with_origins_on() {
    if !uprobes_available() {
        return;
    }
    let ns = NetNs::new();
    let (_server, addr) = go_server(&ns, "keepalive");
    let mut client = go_client(
        &ns,
        &addr,
        "shared",
        &["-count", "15", "-interval", "100ms", "-hold", "-1s"],
    );
    let mut cl = Connlife::start(
        &[client.pid()],
        &["--idle-after", "1s", "--close-wait-after", "1s", "--interval", "1s"],
    );
    wait_go_traced(&cl);
    client.go();
    client.wait_line(|l| l.starts_with("done"));
    // Well past both thresholds.
    cl.collect_for(std::time::Duration::from_secs(4));
    let findings = cl.of_type("finding");
    assert!(findings.is_empty(), "healthy client flagged: {findings:?}");
    assert!(cl.of_type("group").is_empty(), "{}", cl.dump());
    let last = cl.of_type("summary").last().cloned().cloned().unwrap();
    assert_eq!(last["by_state"]["ESTABLISHED"], 1, "one pooled connection: {last}");
    cl.stop();
}

/// `--no-origin`: the same transport-per-request group, with no `origin` anywhere.
#[test]
fn no_origin_leaves_origin_out() {
    let ns = NetNs::new();
    let (_server, addr) = go_server(&ns, "keepalive");
    let mut client = go_client(
        &ns,
        &addr,
        "transport-per-request",
        &["-count", "0", "-interval", "300ms"],
    );
    let mut cl = Connlife::start(
        &[client.pid()],
        &["--idle-after", "2s", "--interval", "1s", "--no-origin"],
    );
    client.go();
    let g = cl.wait_for(|v| v["type"] == "group" && v["count"].as_u64() >= Some(4));
    assert!(g.get("origin").is_none() && g.get("from_origin").is_none(), "{g}");
    assert_ne!(g["hint"], HINT_TRANSPORT_PER_REQUEST, "{g}");
    for f in cl.of_type("finding") {
        assert!(f.get("origin").is_none(), "{f}");
    }
    cl.stop();
    let said: Vec<String> = cl.proc.err_lines.try_iter().collect();
    assert!(
        !said.iter().any(|l| l.contains("origins traced")),
        "no uprobes with --no-origin: {said:?}"
    );
    for s in cl.of_type("summary") {
        for g in s["groups"].as_array().into_iter().flatten() {
            assert!(g.get("origin").is_none(), "{s}");
        }
    }
}

/// A stripped Go binary (`strip`: no symbol table, no DWARF) keeps Go's own function table
/// (`.gopclntab`, which the runtime needs): connlife finds net/http's functions there for the
/// uprobes and names the frames from it, so the request's origin is the same as unstripped,
/// only without file:line.
#[test]
fn stripped_go_client_is_named_from_its_function_table() {
    let dir = std::env::temp_dir().join(format!("connlife-stripped-go-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join("client.stripped");
    let st = Command::new("strip")
        .arg("-o")
        .arg(&bin)
        .arg(go_binary("client"))
        .status()
        .expect("strip");
    assert!(st.success());
    let bin = bin.to_str().unwrap();
    let ns = NetNs::new();
    let (_server, addr) = go_server(&ns, "keepalive");
    let mut cmd = ns.command(bin);
    cmd.args([
        "-url",
        &format!("http://{addr}/"),
        "-mode",
        "transport-per-request",
        "-count",
        "4",
        "-interval",
        "100ms",
        "-hold",
        "-1s",
        "-wait-stdin",
    ]);
    let mut client = Proc::spawn(cmd, "go-client-stripped");
    let mut cl = Connlife::start(&[client.pid()], &["--idle-after", "2s", "--interval", "1s"]);
    let attached = cl.proc.wait_err_line(|l| l.contains(bin));
    assert!(attached.contains("Go net/http origins traced in"), "{attached}");
    client.go();
    let found = cl.wait_count(4, |v| v["type"] == "finding" && v["kind"] == "established_unreused");
    for f in &found {
        let o = &f["origin"];
        assert_eq!(o["source"], "go_request", "{f}");
        let site = site_frames(o);
        // Named from .gopclntab: the function, no file:line (the unstripped test has them).
        assert_eq!(site[0], "main.post", "{f}");
    }
    // Transports are counted among the findings of one moment: the group of all four.
    let group = cl.wait_for(|v| v["type"] == "group" && v["count"] == 4);
    assert_eq!(group["origin"]["transports"], 4, "a Transport per request: {group}");
    eprintln!("stripped Go: {attached}\n  site: {}", found[0]["origin"]["site"]);
    cl.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The agent (`--comm client`, so it sees only the test's Go client): its JSON findings carry
/// the full origin, and /metrics a bounded `origin` label with the call site's function only.
#[test]
fn agent_names_the_origin_in_json_findings_and_metrics() {
    require_root();
    let port = free_port();
    let ns = NetNs::new();
    let (_server, addr) = go_server(&ns, "keepalive");
    let mut client = go_client(
        &ns,
        &addr,
        "transport-per-request",
        &["-count", "4", "-interval", "100ms", "-hold", "-1s"],
    );
    let mut cmd = Command::new(CONNLIFE);
    cmd.args(["agent", "--comm", "client", "--listen", &format!("127.0.0.1:{port}")]);
    cmd.args(["--interval", "1s", "--idle-after", "2s"]);
    let agent = Proc::spawn(cmd, "agent");
    // At start the agent finds the waiting client by its name and puts the uprobes on its
    // binary before its first request.
    let attached = agent.wait_err_line(|l| l.contains(&format!("pid {}:", client.pid())));
    assert!(attached.contains("Go net/http origins traced"), "{attached}");
    agent.wait_err_line(|l| l.contains("connlife: tracing"));
    client.go();
    let finding = agent.wait_line(|l| {
        serde_json::from_str::<Value>(l)
            .is_ok_and(|v| v["type"] == "finding" && v["pid"] == client.pid() && v["origin"].is_object())
    });
    let finding: Value = serde_json::from_str(&finding).unwrap();
    assert_eq!(finding["origin"]["source"], "go_request", "{finding}");
    assert_eq!(
        site_frames(&finding["origin"])[0].split(' ').next(),
        Some("main.post"),
        "{finding}"
    );
    let metric = r#"connlife_stuck_connections_by_origin{kind="established_unreused",origin="main.post"} 4"#;
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let body = http_metrics(port).unwrap_or_default();
        if body.lines().any(|l| l == metric) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no `{metric}` in:\n{body}");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

/// The agent's /metrics body.
fn http_metrics(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).ok()?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out.split_once("\r\n\r\n")?.1.to_string())
}

/// A Rust program built with frame pointers (connlife's own demo client: everything built in
/// this workspace has them) is named at its own function, through Rust's std and glibc's
/// connect, for both of its leaks.
#[test]
fn rust_client_with_frame_pointers_names_its_function() {
    let ns = NetNs::new();
    let TracedDemoClient {
        servers: _servers,
        mut client,
        connlife: mut cl,
    } = traced_demo_client(&ns);
    client.go();
    let expected = format!(
        "demo_client (connlife-workload.rs:{})",
        source_line("src/bin/connlife-workload.rs", "fn demo_client(", "TcpStream::connect(")
    );
    for kind in ["established_unreused", "close_wait_stuck"] {
        let f = cl.wait_for(|v| v["type"] == "finding" && v["kind"] == kind);
        assert_eq!(f["origin"]["source"], "connect", "{f}");
        assert_eq!(site_frames(&f["origin"])[0], expected, "{f}");
    }
    cl.stop();
}

/// `--pid` of a shell that then execs the Go client (a wrapper script): the new binary gets
/// the uprobes when connlife reads the exec, so its connections have the request's origin.
#[test]
fn a_wrapper_that_execs_a_go_client_gets_its_origins() {
    let ns = NetNs::new();
    let (_server, addr) = go_server(&ns, "keepalive");
    let client_bin = go_binary("client");
    let url = format!("http://{addr}/");
    let mut cmd = ns.command("sh");
    cmd.args(["-c", "read line; exec \"$0\" \"$@\""])
        .arg(&client_bin)
        .args([
            "-url",
            &url,
            "-mode",
            "transport-per-request",
            "-count",
            "4",
            "-interval",
            "100ms",
            "-hold",
            "-1s",
        ]);
    let mut wrapper = Proc::spawn(cmd, "sh-then-go-client");
    let mut cl = Connlife::start(&[wrapper.pid()], &["--idle-after", "2s", "--interval", "1s"]);
    wrapper.go();
    let attached = cl
        .proc
        .wait_err_line(|l| l.contains(&format!("pid {}:", wrapper.pid())));
    assert!(attached.contains("Go net/http origins traced"), "{attached}");
    // The program may dial once before connlife has read the exec and placed the uprobes
    // (that connection has no origin: net/http's dial goroutine names no user code); the
    // group names the request's function from the connections after.
    let group = cl.wait_for(|v| v["type"] == "group" && v["count"] == 4);
    assert_eq!(group["origin"]["source"], "go_request", "{group}");
    assert_eq!(
        site_frames(&group["origin"])[0].split(' ').next(),
        Some("main.post"),
        "{group}"
    );
    assert!(group["from_origin"].as_u64().is_some_and(|n| n >= 3), "{group}");
    cl.stop();
}

/// An agent sees every exec on the host and checks each new binary for Go. Short-lived
/// processes (a shell script's `true`, `sleep`, `grep`) are gone before their executable can
/// be read: that is nothing to trace and nothing to say, not one stderr line per process.
#[test]
fn agent_says_nothing_of_processes_gone_before_their_binary_is_read() {
    require_root();
    let port = free_port();
    let mut cmd = Command::new(CONNLIFE);
    cmd.args(["agent", "--listen", &format!("127.0.0.1:{port}"), "--interval", "1s"]);
    let mut agent = Proc::spawn(cmd, "agent");
    agent.wait_err_line(|l| l.contains("connlife: tracing"));
    // 300 processes that exec and exit at once; then a second for the agent to read them.
    let burst = Command::new("sh")
        .args(["-c", "i=0; while [ $i -lt 300 ]; do /bin/true; i=$((i+1)); done"])
        .status()
        .unwrap();
    assert!(burst.success());
    std::thread::sleep(std::time::Duration::from_secs(2));
    agent.signal(libc::SIGINT);
    agent.wait_exit();
    // Every line: the reader ends at the exited agent's end of stderr.
    let said: Vec<String> = agent
        .err_lines
        .iter()
        .filter(|l| l.contains("connlife: pid "))
        .collect();
    // What such a line says, now or before (the unreadable executable, or the process gone):
    // a Go program elsewhere on the host may be named rightly, so only these count.
    let about_gone: Vec<&String> = said
        .iter()
        .filter(|l| l.contains("/exe: No such file") || l.contains("gone before its executable"))
        .collect();
    assert!(
        about_gone.is_empty(),
        "{} lines about processes that are gone, e.g. {:?}",
        about_gone.len(),
        about_gone.first()
    );
}
