//! Writes the committed seed inputs of the fuzz targets into `fuzz/seeds/<target>/`:
//! `cargo run --example seeds` in `fuzz/` (then commit what changed).
//!
//! - `decode`: ring-buffer records of every kind, built from `connlife_common::Event` bytes.
//! - `record` and `session`: small `--record` files (JSON lines of `Input`): a session that
//!   finds a CLOSE_WAIT leak, one cut in its last line, and one with the rarer inputs.
//!   Each line is written from an `Input` value by serde_json, as the recorder does.
use std::{fs, net::Ipv6Addr, path::Path};

use connlife::{
    kernel::event::{comm_bytes, decode, Kind, Syscall},
    model::session::Input,
};
use connlife_common::{Event, Origin, AF_INET, AF_INET6, EVENT_SIZE};
use serde_json::{json, Value};

fn bytes_of(e: &Event) -> Vec<u8> {
    // SAFETY: Event is repr(C) plain data of EVENT_SIZE bytes.
    unsafe { std::slice::from_raw_parts((e as *const Event).cast::<u8>(), EVENT_SIZE) }.to_vec()
}

/// A socket event of `curl` (pid 42, fd 7): 127.0.0.1:40000 -> 10.0.0.2:80.
fn sock_event(kind: Kind, ts_ns: u64, old: u8, new: u8) -> Event {
    let mut e = Event::ZEROED;
    e.kind = kind as u32;
    e.ts_ns = ts_ns;
    e.sk = 0xffff_8880_1234_5000;
    e.tgid = 42;
    e.fd = 7;
    e.netns = 4026531840;
    e.comm = comm_bytes("curl");
    e.family = AF_INET as u8;
    e.role = 1;
    e.sport = 40000;
    e.dport = 80;
    e.saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
    e.daddr[..4].copy_from_slice(&[10, 0, 0, 2]);
    e.old_state = old;
    e.new_state = new;
    e
}

fn records() -> Vec<(&'static str, Event)> {
    let s = 1_000_000_000;
    let mut accept6 = sock_event(Kind::Accept, s + 10, 0, 1);
    accept6.family = AF_INET6 as u8;
    accept6.role = 2;
    accept6.saddr = Ipv6Addr::LOCALHOST.octets();
    accept6.daddr = Ipv6Addr::LOCALHOST.octets();
    accept6.fd = 9;
    let mut close = sock_event(Kind::FdClose, s + 20, 0, 0);
    close.family = 0;
    let mut exit = Event::ZEROED;
    exit.kind = Kind::Exit as u32;
    exit.ts_ns = s + 30;
    exit.tgid = 42;
    exit.ret = 9; // killed by SIGKILL
    exit.comm = comm_bytes("curl");
    let mut fail = exit;
    fail.kind = Kind::FdFail as u32;
    fail.ret = -24; // EMFILE
    fail.aux = Syscall::Accept4 as u32;
    let mut fork = exit;
    fork.kind = Kind::Fork as u32;
    fork.aux = 43;
    let mut used = sock_event(Kind::Use, s + 5, 0, 0);
    used.sock_use.bytes_sent = 120;
    used.sock_use.bytes_received = 4096;
    used.sock_use.last_send_ns = s + 1;
    used.sock_use.last_recv_ns = s + 4;
    used.sock_use.exchanges = 1;
    // A Go net/http dial: its own stack, the request's stack and the Transport.
    let mut go_dial = sock_event(Kind::State, s + 6, 7, 2);
    go_dial.origin = Origin {
        stack: 3,
        request_stack: 4,
        transport: 0xc000_0ee2_80,
    };
    vec![
        ("state-syn-sent", sock_event(Kind::State, s, 7, 2)),
        ("state-established", sock_event(Kind::State, s + 1, 2, 1)),
        ("state-close-wait", sock_event(Kind::State, s + 2, 1, 8)),
        ("state-close", sock_event(Kind::State, s + 3, 9, 7)),
        ("accept-ipv6", accept6),
        ("claim", sock_event(Kind::Claim, s + 4, 0, 1)),
        ("use", used),
        ("fd-close", close),
        ("exit", exit),
        ("fd-fail", fail),
        ("fork", fork),
        ("state-syn-sent-origin", go_dial),
    ]
}

/// One JSON line written from the `Input` that `value` describes (checked by parsing it).
fn line(value: Value) -> String {
    let input: Input = serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{value}: {e}"));
    serde_json::to_string(&input).expect("an input serializes") + "\n"
}

fn event(e: &Event) -> String {
    let event = decode(&bytes_of(e)).expect("a seed record decodes");
    line(json!({"input": "event", "event": event}))
}

fn start() -> String {
    line(
        json!({"input": "start", "pids": [42], "now_ns": 900_000_000u64, "use_counting": true,
        "close_wait_after_ns": 1_000_000_000u64, "idle_after_ns": 2_000_000_000u64}),
    )
}

fn tick(now_ns: u64, open_fds: u32) -> String {
    line(
        json!({"input": "tick", "now_ns": now_ns, "fds": [{"ts_ns": now_ns, "pid": 42,
        "open_fds": open_fds, "limit": 1024, "tcp_by_state": {"CLOSE_WAIT": 1}}]}),
    )
}

/// A session of curl: a connection the server closes and curl never does, then curl exits.
fn leak() -> String {
    let s = 1_000_000_000u64;
    let sock = json!({"netns": 4026531840u32, "local": "127.0.0.1:39000", "remote": "10.0.0.2:80",
        "state": "ESTABLISHED", "role": "client", "owners": [{"tgid": 42, "comm": "curl", "fd": 5}],
        "usage": {"bytes_sent": 1, "bytes_received": 2, "last_send_ns": 0, "last_recv_ns": 0, "exchanges": 1}});
    let mut text = start();
    text += &line(json!({"input": "snapshot", "started_ns": 950_000_000u64, "now_ns": s, "sockets": [sock]}));
    let all = records();
    for name in ["state-syn-sent", "state-established", "use", "state-close-wait"] {
        text += &event(&all.iter().find(|(n, _)| *n == name).expect("a seed").1);
    }
    text += &tick(s + 2_000_000_000, 12);
    text += &tick(s + 4_000_000_000, 30);
    text += &line(json!({"input": "lost", "now_ns": s + 4_000_000_001, "ring_full": 1, "decode_errors": 0}));
    for name in ["fd-fail", "fork", "exit"] {
        text += &event(&all.iter().find(|(n, _)| *n == name).expect("a seed").1);
    }
    text += &line(json!({"input": "end", "now_ns": s + 5_000_000_000u64}));
    text
}

/// Track, Follow, Reconcile, UseRefresh, Prune and Gone, with an IPv6 server socket.
fn rare() -> String {
    let s = 1_000_000_000u64;
    let all = records();
    let sock = json!({"netns": 1, "local": "[::1]:8080", "remote": "[::1]:51000", "state": "CLOSE_WAIT",
        "role": "server", "owners": [], "usage": {"bytes_sent": 0, "bytes_received": 0,
        "last_send_ns": 0, "last_recv_ns": 0, "exchanges": 0}});
    let mut text = start();
    text += &line(json!({"input": "track", "pid": 77, "now_ns": s}));
    text += &line(json!({"input": "follow", "pid": 43, "parent": 42, "now_ns": s}));
    text += &event(&all.iter().find(|(n, _)| *n == "accept-ipv6").expect("a seed").1);
    text += &line(json!({"input": "reconcile", "started_ns": s + 1, "now_ns": s + 2, "sockets": [sock]}));
    text += &line(
        json!({"input": "use_refresh", "now_ns": s + 3, "usage": [[0xffff_8880_1234_5000u64,
        {"bytes_sent": 10, "bytes_received": 20, "last_send_ns": s, "last_recv_ns": s + 1, "exchanges": 2}]]}),
    );
    text += &line(json!({"input": "prune", "now_ns": s + 4, "max_age_ns": 1}));
    text += &line(json!({"input": "gone", "pid": 77, "now_ns": s + 5, "before_start": false}));
    text
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).expect("creating the seed directory");
    fs::write(dir.join(name), bytes).expect("writing a seed");
}

fn main() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    for (name, e) in records() {
        write(&seeds.join("decode"), name, &bytes_of(&e));
    }
    let leak = leak();
    let cut = &leak[..leak.len() - 20];
    for target in ["record", "session"] {
        let dir = seeds.join(target);
        write(&dir, "leak.jsonl", leak.as_bytes());
        write(&dir, "cut-last-line.jsonl", cut.as_bytes());
        write(&dir, "rare-inputs.jsonl", rare().as_bytes());
    }
    println!("seeds written under {}", seeds.display());
}
