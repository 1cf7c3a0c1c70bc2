//! Small real TCP programs for the demo and the tests: an HTTP/1.1-ish server (keep-alive or
//! close after each response), clients that leak the way the user's Go service did (a new
//! connection per request, never reused; or never closed after the server hangs up), healthy
//! clients (one reused connection; short connections), and a holder of N idle connections.
//! Each prints `ready ...` (and `pid N` for the demo) on stdout when it is set up.
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Command, Stdio},
    thread,
    time::Duration,
};

const USAGE: &str = "usage: connlife-workload demo
       connlife-workload demo-client KEEPALIVE_ADDR CLOSING_ADDR
       connlife-workload server keepalive|close [ADDR]
       connlife-workload client leak|close-wait|reuse|short|dup2 ADDR COUNT INTERVAL_MS [--wait-stdin] [--hold]
       connlife-workload hold ADDR COUNT";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match a.as_slice() {
        ["demo"] => demo(),
        ["server", mode, rest @ ..] => server(mode == &"close", rest.first().copied().unwrap_or("127.0.0.1:0")),
        ["client", mode, addr, count, interval, rest @ ..] => client(mode, addr, count, interval, rest),
        ["hold", addr, count] => hold(addr, count),
        ["demo-client", keepalive, closing] => demo_client(keepalive, closing),
        _ => Err(USAGE.to_string()),
    };
    if let Err(e) = result {
        eprintln!("connlife-workload: {e}");
        std::process::exit(2);
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Serve one connection: read requests (up to the blank line), answer each; in close mode,
/// answer once and close (the server-closes-first case).
fn serve(mut s: TcpStream, close: bool) {
    let mut reader = BufReader::new(match s.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    loop {
        let mut line = String::new();
        let mut got = false;
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" || line == "\n" => break,
                Ok(_) => got = true,
            }
        }
        if !got {
            return;
        }
        let body = "ok\n";
        let conn = if close { "close" } else { "keep-alive" };
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: {conn}\r\n\r\n{body}",
            body.len()
        );
        if s.write_all(resp.as_bytes()).is_err() {
            return;
        }
        if close {
            // Our FIN goes out now: the server closes first, whatever the client does next.
            let _ = s.shutdown(std::net::Shutdown::Write);
            return;
        }
    }
}

fn server(close: bool, addr: &str) -> Result<(), String> {
    let l = TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    say(&format!("ready {}", l.local_addr().map_err(|e| e.to_string())?));
    for s in l.incoming().flatten() {
        thread::spawn(move || serve(s, close));
    }
    Ok(())
}

fn request(s: &mut TcpStream) -> std::io::Result<()> {
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")?;
    // Read the whole small response (headers + "ok\n").
    let mut buf = [0u8; 256];
    let mut got = Vec::new();
    while !got.ends_with(b"ok\n") {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        got.extend_from_slice(&buf[..n]);
    }
    // Like an HTTP client, read a `Connection: close` response to its end (the server's FIN).
    if got.windows(17).any(|w| w == b"Connection: close") {
        while s.read(&mut buf)? > 0 {}
    }
    Ok(())
}

fn client(mode: &str, addr: &str, count: &str, interval: &str, rest: &[&str]) -> Result<(), String> {
    let addr: SocketAddr = addr.parse().map_err(|e| format!("address {addr}: {e}"))?;
    let count: u64 = count.parse().map_err(|e| format!("count: {e}"))?;
    let interval = Duration::from_millis(interval.parse().map_err(|e| format!("interval: {e}"))?);
    if rest.contains(&"--wait-stdin") {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    }
    let mut kept = Vec::new();
    let mut kept_fds = Vec::new();
    let mut shared: Option<TcpStream> = None;
    let mut i = 0;
    while count == 0 || i < count {
        i += 1;
        let fresh = || TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"));
        match mode {
            // New connection per request, response read, connection kept and never used again.
            "leak" => {
                let mut s = fresh()?;
                request(&mut s).map_err(|e| e.to_string())?;
                kept.push(s);
            }
            // Request answered and closed by the server; we never close: CLOSE_WAIT.
            "close-wait" => {
                let mut s = fresh()?;
                request(&mut s).map_err(|e| e.to_string())?;
                kept.push(s);
            }
            // One connection reused for every request.
            "reuse" => {
                if shared.is_none() {
                    shared = Some(fresh()?);
                }
                request(shared.as_mut().expect("set")).map_err(|e| e.to_string())?;
            }
            // One connection per request, its fd replaced by dup2 (a close without close()).
            "dup2" => {
                use std::os::fd::{AsRawFd, IntoRawFd};
                let mut s = fresh()?;
                request(&mut s).map_err(|e| e.to_string())?;
                let null = std::fs::File::open("/dev/null").map_err(|e| e.to_string())?;
                let fd = s.into_raw_fd();
                // SAFETY: both fds are open and ours; dup2 replaces `fd` atomically.
                if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
                    return Err(format!("dup2: {}", std::io::Error::last_os_error()));
                }
                kept_fds.push(fd);
            }
            // One connection per request, closed by us after the response.
            "short" => {
                let mut s = fresh()?;
                request(&mut s).map_err(|e| e.to_string())?;
                drop(s);
            }
            other => return Err(format!("unknown client mode {other}\n{USAGE}")),
        }
        say(&format!("req {i}"));
        thread::sleep(interval);
    }
    say(&format!("done {i}"));
    if rest.contains(&"--hold") {
        loop {
            thread::sleep(Duration::from_secs(3600));
        }
    }
    drop(kept);
    Ok(())
}

/// Open COUNT connections to ADDR and hold them idle (fds printed), for the snapshot test.
fn hold(addr: &str, count: &str) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let count: usize = count.parse().map_err(|e| format!("count: {e}"))?;
    let mut held = Vec::new();
    for _ in 0..count {
        held.push(TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?);
    }
    for s in &held {
        say(&format!(
            "conn fd={} local={}",
            s.as_raw_fd(),
            s.local_addr().map_err(|e| e.to_string())?
        ));
    }
    say(&format!("ready {count}"));
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}

/// The newcomer's demo: a keep-alive server and a close-after-response server in this process,
/// and one leaky client process that does both bugs (pid printed first).
fn demo() -> Result<(), String> {
    let keep = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let close = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let (ka, ca) = (
        keep.local_addr().map_err(|e| e.to_string())?,
        close.local_addr().map_err(|e| e.to_string())?,
    );
    thread::spawn(move || {
        keep.incoming()
            .flatten()
            .for_each(|s| drop(thread::spawn(move || serve(s, false))))
    });
    thread::spawn(move || {
        close
            .incoming()
            .flatten()
            .for_each(|s| drop(thread::spawn(move || serve(s, true))))
    });
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut client = Command::new(&me)
        .args(["demo-client", &ka.to_string(), &ca.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    say(&format!("pid {}", client.id()));
    say(&format!("ready keep-alive server {ka}, closing server {ca}"));
    // Start the client a moment later so a tracer attached on our first line sees it begin.
    thread::sleep(Duration::from_secs(2));
    if let Some(stdin) = client.stdin.as_mut() {
        let _ = stdin.write_all(b"go\n");
    }
    let _ = client.wait();
    Ok(())
}

/// Both bugs of the user's story in one process: every 500 ms a new connection per request to
/// the keep-alive server (kept, never reused), and every 2 s a request to the closing server
/// whose connection it never closes (CLOSE_WAIT).
#[inline(never)] // its own frame: the origin connlife shows for the demo's leaks
fn demo_client(keepalive: &str, closing: &str) -> Result<(), String> {
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    let mut kept = Vec::new();
    for i in 0u64.. {
        let target = if i % 4 == 3 { closing } else { keepalive };
        let mut s = TcpStream::connect(target).map_err(|e| format!("connect {target}: {e}"))?;
        request(&mut s).map_err(|e| e.to_string())?;
        kept.push(s);
        thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}
