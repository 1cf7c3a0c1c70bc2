//! The agent's HTTP endpoint: `GET`/`HEAD` of `/metrics` (OpenMetrics text) and `/healthz`.
//!
//! It is built to stay up when any local user attacks it (issue 11: a few hundred connections
//! sending one byte a second exhausted the agent's fds, and the accept loop then spun at 100%
//! CPU on `EMFILE`). So the HTTP parsing is hyper's (HTTP/1.1 only, one request per connection:
//! `Connection: close`), which answers malformed requests with 400 and limits header sizes; and
//! around it: at most [`EndpointConfig::max_connections`] connections are open at once, and a new
//! one is never made to wait behind slow ones: the oldest connection that has not yet sent a
//! complete request is closed for it (the oldest of all if every one has), so a scraper's request,
//! which arrives in one packet, is answered however many connections an attacker opens; every
//! connection has a whole-request deadline ([`EndpointConfig::request_deadline`]: headers, and
//! writing the response too); accept errors back off (10 ms doubling to 1 s, reset on success)
//! and are logged once per burst, and when they say the process is out of fds the oldest
//! connection is closed to give one back. What went wrong is counted in [`EndpointCounters`]
//! for the agent to export. The endpoint has a thread and a current-thread runtime of its own,
//! so it answers while the event loop works through a flood of events.
use std::{
    collections::VecDeque,
    convert::Infallible,
    io,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Arc, Mutex, PoisonError,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use hyper::{
    body::Incoming,
    header::{HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE},
    server::conn::http1,
    service::service_fn,
    Method, Request, Response, StatusCode,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
    task::AbortHandle,
};

/// Content type of `/metrics`.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// First pause after a failed accept; it doubles while accepts keep failing.
const MIN_BACKOFF: Duration = Duration::from_millis(10);
/// Longest pause after a failed accept.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// A failed accept this long after the previous one starts a new burst (logged again).
const QUIET: Duration = Duration::from_secs(1);
/// Most bytes hyper buffers for a request's head (hyper's least allowed value is 8 KiB).
const MAX_BUF: usize = 16 * 1024;
/// Most header fields in a request.
const MAX_HEADERS: usize = 64;

/// What the endpoint serves; the agent's event loop updates it.
#[derive(Debug, Default, Clone)]
pub struct EndpointState {
    /// The OpenMetrics exposition served on `/metrics`, rendered by the event loop.
    pub metrics: String,
    /// When the event loop last ticked (CLOCK_MONOTONIC ns, as `now_ns` in [`spawn`] gives);
    /// `/healthz` answers 503 once this is [`EndpointConfig::stall_after`] old.
    pub last_tick_ns: u64,
}

/// How the endpoint protects itself.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Most connections open at once; a new one past it closes the oldest (counted).
    pub max_connections: usize,
    /// Longest a connection may live: reading the request head and writing the answer.
    pub request_deadline: Duration,
    /// `/healthz` answers 503 when the event loop has not ticked for this long.
    pub stall_after: Duration,
}

impl EndpointConfig {
    /// 64 connections, a 2 s deadline, and the given stall time (the agent: 3 intervals).
    pub fn new(stall_after: Duration) -> Self {
        EndpointConfig {
            max_connections: 64,
            request_deadline: Duration::from_secs(2),
            stall_after,
        }
    }
}

/// What went wrong at the endpoint, counted since it started (for `connlife_errors_total`).
#[derive(Debug, Default)]
pub struct EndpointCounters {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Failed accepts (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`, aborted handshakes...).
    pub accept_errors: AtomicU64,
    /// Connections closed at the request deadline (head not read in time, or answer not taken).
    pub timeouts: AtomicU64,
    /// Connections closed to make room for a newer one (cap reached, or out of fds).
    pub evictions: AtomicU64,
}

/// A running endpoint.
#[derive(Debug)]
pub struct Endpoint {
    /// The endpoint's thread; it serves until the process exits.
    pub thread: JoinHandle<()>,
    /// Its error counters, for the agent to export.
    pub counters: Arc<EndpointCounters>,
}

/// Serves `listener` on a thread of its own with its own current-thread runtime; returns at
/// once. `now_ns` gives CLOCK_MONOTONIC in ns (the clock of [`EndpointState::last_tick_ns`]).
/// Errors are those of setting up the runtime, the listener and the thread.
pub fn spawn(
    listener: std::net::TcpListener,
    state: Arc<Mutex<EndpointState>>,
    config: EndpointConfig,
    now_ns: fn() -> u64,
) -> io::Result<Endpoint> {
    listener.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let listener = {
        let _guard = rt.enter();
        TcpListener::from_std(listener)?
    };
    let counters = Arc::new(EndpointCounters::default());
    let server = Server(Arc::new(Inner {
        state,
        config,
        now_ns,
        counters: counters.clone(),
    }));
    let thread = std::thread::Builder::new()
        .name("connlife-metrics".into())
        .spawn(move || rt.block_on(server.run(listener)))?;
    Ok(Endpoint { thread, counters })
}

/// Where connections come from: the listener, or a fake in tests.
trait Accept {
    type Io: AsyncRead + AsyncWrite + Send + Unpin + 'static;
    async fn accept(&mut self) -> io::Result<Self::Io>;
}

impl Accept for TcpListener {
    type Io = TcpStream;
    async fn accept(&mut self) -> io::Result<TcpStream> {
        TcpListener::accept(self).await.map(|(sock, _)| sock)
    }
}

struct Inner {
    state: Arc<Mutex<EndpointState>>,
    config: EndpointConfig,
    now_ns: fn() -> u64,
    counters: Arc<EndpointCounters>,
}

#[derive(Clone)]
struct Server(Arc<Inner>);

/// An open connection: its task, and whether its request head has arrived.
struct Conn {
    task: AbortHandle,
    answered: Arc<AtomicBool>,
}

/// Open connections, oldest first.
#[derive(Default)]
struct Conns(VecDeque<Conn>);

impl Conns {
    fn open(&mut self) -> usize {
        self.0.retain(|c| !c.task.is_finished());
        self.0.len()
    }

    /// Closes the oldest connection still waiting for its request (else the oldest); false if
    /// none is open.
    fn evict_one(&mut self) -> bool {
        self.open();
        let i = self.0.iter().position(|c| !c.answered.load(Relaxed)).unwrap_or(0);
        match self.0.remove(i) {
            Some(c) => {
                c.task.abort();
                true
            }
            None => false,
        }
    }
}

/// Pauses after failed accepts: 10 ms doubling to 1 s, reset by a successful accept.
#[derive(Default)]
struct Backoff {
    delay: Option<Duration>,
    last_error: Option<Instant>,
}

impl Backoff {
    fn failed(&mut self, e: &io::Error) -> Duration {
        let now = Instant::now();
        if self.last_error.is_none_or(|t| now.duration_since(t) >= QUIET) {
            log::warn!(
                "metrics endpoint: accept failed: {e}; retrying after {MIN_BACKOFF:?} doubling \
                 to {MAX_BACKOFF:?} (counted in the endpoint's accept errors, logged once a burst)"
            );
        }
        self.last_error = Some(now);
        let delay = self.delay.map_or(MIN_BACKOFF, |d| (d * 2).min(MAX_BACKOFF));
        self.delay = Some(delay);
        delay
    }

    fn succeeded(&mut self) {
        self.delay = None;
    }
}

/// Failed accepts that concern one connection only (retried at once), as opposed to a lack of
/// resources (retried after a pause).
fn per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

fn out_of_fds(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

impl Server {
    async fn run<A: Accept>(self, mut acceptor: A) {
        let counters = &self.0.counters;
        let mut conns = Conns::default();
        let mut backoff = Backoff::default();
        loop {
            match acceptor.accept().await {
                Ok(io) => {
                    backoff.succeeded();
                    counters.accepted.fetch_add(1, Relaxed);
                    while conns.open() >= self.0.config.max_connections.max(1) && conns.evict_one() {
                        counters.evictions.fetch_add(1, Relaxed);
                    }
                    let answered = Arc::new(AtomicBool::new(false));
                    let task = tokio::spawn(self.clone().serve(io, answered.clone()));
                    conns.0.push_back(Conn {
                        task: task.abort_handle(),
                        answered,
                    });
                    // Let the new connection read its request (if it is there) before more are
                    // accepted: one that has its request is the last to be evicted.
                    tokio::task::yield_now().await;
                }
                Err(e) if per_connection(&e) => {
                    counters.accept_errors.fetch_add(1, Relaxed);
                }
                Err(e) => {
                    counters.accept_errors.fetch_add(1, Relaxed);
                    let delay = backoff.failed(&e);
                    // Out of fds: give one back, or the connections waiting in the backlog (a
                    // scraper among them) wait for deadlines when the cap is above the fd limit.
                    if out_of_fds(&e) && conns.evict_one() {
                        counters.evictions.fetch_add(1, Relaxed);
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Serves one connection: one request, within the deadline.
    async fn serve<I: AsyncRead + AsyncWrite + Send + Unpin + 'static>(self, io: I, answered: Arc<AtomicBool>) {
        let deadline = self.0.config.request_deadline;
        let server = self.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            answered.store(true, Relaxed);
            let response = server.respond(req.method(), req.uri().path());
            std::future::ready(Ok::<_, Infallible>(response))
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(deadline)
            .keep_alive(false)
            .max_buf_size(MAX_BUF)
            .max_headers(MAX_HEADERS)
            .serve_connection(TokioIo::new(io), service);
        match tokio::time::timeout(deadline, conn).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) if e.is_timeout() => {
                self.0.counters.timeouts.fetch_add(1, Relaxed);
            }
            // Malformed requests (answered 400 by hyper), resets: the client's business.
            Ok(Err(e)) => log::debug!("metrics endpoint: connection: {e}"),
            Err(_) => {
                self.0.counters.timeouts.fetch_add(1, Relaxed);
            }
        }
    }

    fn respond(&self, method: &Method, path: &str) -> Response<String> {
        let head = *method == Method::HEAD;
        if matches!(path, "/metrics" | "/healthz") && !(head || *method == Method::GET) {
            let mut r = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain; charset=utf-8",
                "method not allowed\n".into(),
                head,
            );
            r.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        let state = || self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        match path {
            "/metrics" => {
                let state = state();
                let len = state.metrics.len();
                let body = if head { String::new() } else { state.metrics.clone() };
                drop(state);
                let mut r = text(StatusCode::OK, OPENMETRICS_CONTENT_TYPE, body, false);
                r.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(len));
                r
            }
            "/healthz" => {
                let last = state().last_tick_ns;
                let age = (self.0.now_ns)().saturating_sub(last);
                let stall = u64::try_from(self.0.config.stall_after.as_nanos()).unwrap_or(u64::MAX);
                let (status, body) = if age < stall {
                    (StatusCode::OK, "ok\n")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "event loop stalled\n")
                };
                text(status, "text/plain; charset=utf-8", body.into(), head)
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "not found; try /metrics or /healthz\n".into(),
                head,
            ),
        }
    }
}

/// A response with `body` (sent as headers only, with its Content-Length, when `head`).
fn text(status: StatusCode, content_type: &'static str, body: String, head: bool) -> Response<String> {
    let len = body.len();
    let mut r = Response::new(if head { String::new() } else { body });
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(len));
    r
}

#[cfg(test)]
mod tests {
    use std::{
        io::{BufRead, BufReader, Read, Write},
        net::SocketAddr,
        process::{Command, Stdio},
        sync::{atomic::AtomicUsize, OnceLock},
    };

    use super::*;

    /// A monotonic clock far from 0, so that ticks in the past are representable.
    fn now_ns() -> u64 {
        static START: OnceLock<Instant> = OnceLock::new();
        let elapsed = START.get_or_init(Instant::now).elapsed();
        1_000_000_000_000 + elapsed.as_nanos() as u64
    }

    struct Running {
        addr: SocketAddr,
        state: Arc<Mutex<EndpointState>>,
        counters: Arc<EndpointCounters>,
    }

    fn start(config: EndpointConfig) -> Running {
        // Bound as the agent binds it: tokio's listen backlog is 1024 (std's 128).
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .and_then(|l| l.into_std())
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(EndpointState {
            metrics: "# TYPE up gauge\nup 1\n# EOF\n".into(),
            last_tick_ns: now_ns(),
        }));
        let endpoint = spawn(listener, state.clone(), config, now_ns).unwrap();
        Running {
            addr,
            state,
            counters: endpoint.counters,
        }
    }

    #[derive(Debug)]
    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            let h = self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name));
            h.map(|(_, v)| v.as_str())
        }
    }

    /// Sends `raw` and reads the answer to the end (the server closes after one request).
    fn request(addr: SocketAddr, raw: &[u8], timeout: Duration) -> io::Result<Reply> {
        let mut sock = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        sock.set_read_timeout(Some(timeout))?;
        sock.write_all(raw)?;
        let mut buf = Vec::new();
        sock.read_to_end(&mut buf)?;
        let split = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| io::Error::other(format!("no head in {:?}", String::from_utf8_lossy(&buf))))?;
        let head = String::from_utf8_lossy(&buf[..split]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line in {head:?}")))?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Ok(Reply {
            status,
            headers,
            body: buf[split + 4..].to_vec(),
        })
    }

    fn get(addr: SocketAddr, method: &str, path: &str) -> Reply {
        let raw = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        request(addr, raw.as_bytes(), Duration::from_secs(5)).unwrap()
    }

    fn config() -> EndpointConfig {
        EndpointConfig::new(Duration::from_secs(5))
    }

    #[test]
    fn get_metrics() {
        let ep = start(config());
        let r = get(ep.addr, "GET", "/metrics");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some(OPENMETRICS_CONTENT_TYPE));
        assert_eq!(r.body, b"# TYPE up gauge\nup 1\n# EOF\n");
        assert_eq!(r.header("content-length"), Some("27"));
        assert_eq!(r.header("connection"), Some("close"));
        ep.state.lock().unwrap().metrics = "# EOF\n".into();
        let r = get(ep.addr, "GET", "/metrics?x=1");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"# EOF\n"[..]));
    }

    #[test]
    fn head_has_length_and_no_body() {
        let ep = start(config());
        for (path, len) in [("/metrics", "27"), ("/healthz", "3")] {
            let r = get(ep.addr, "HEAD", path);
            assert_eq!(r.status, 200, "{path}");
            assert_eq!(r.header("content-length"), Some(len), "{path}");
            assert!(r.body.is_empty(), "{path}: {:?}", r.body);
        }
        let r = get(ep.addr, "HEAD", "/nope");
        assert_eq!(r.status, 404);
        assert!(r.body.is_empty());
    }

    #[test]
    fn other_methods_are_405_with_allow() {
        let ep = start(config());
        for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
            for path in ["/metrics", "/healthz"] {
                let raw = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi");
                let r = request(ep.addr, raw.as_bytes(), Duration::from_secs(5)).unwrap();
                assert_eq!(r.status, 405, "{method} {path}");
                assert_eq!(r.header("allow"), Some("GET, HEAD"), "{method} {path}");
            }
        }
    }

    #[test]
    fn garbage_is_400_and_unknown_path_404() {
        let ep = start(config());
        for raw in [
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n"[..],
            b"GET /metrics HTTP/1.1\r\nbad header line\r\n\r\n",
            b"HELLO\r\n\r\n",
        ] {
            let r = request(ep.addr, raw, Duration::from_secs(5)).unwrap();
            assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(raw));
        }
        assert_eq!(get(ep.addr, "GET", "/").status, 404);
        assert_eq!(get(ep.addr, "GET", "/metricsx").status, 404);
        assert_eq!(get(ep.addr, "POST", "/other").status, 404);
    }

    #[test]
    fn healthz_503_when_event_loop_stalls() {
        let ep = start(config());
        let r = get(ep.addr, "GET", "/healthz");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ok\n"[..]));
        assert!(r.header("content-type").unwrap().starts_with("text/plain"));
        ep.state.lock().unwrap().last_tick_ns = now_ns() - 6_000_000_000;
        let r = get(ep.addr, "GET", "/healthz");
        assert_eq!((r.status, r.body.as_slice()), (503, &b"event loop stalled\n"[..]));
        ep.state.lock().unwrap().last_tick_ns = now_ns();
        assert_eq!(get(ep.addr, "GET", "/healthz").status, 200);
    }

    #[test]
    fn slow_request_times_out() {
        let mut config = config();
        config.request_deadline = Duration::from_millis(300);
        let ep = start(config);
        let mut sock = std::net::TcpStream::connect(ep.addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        sock.write_all(b"GET /metr").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = Vec::new();
        // Closed by the server (EOF or a reset), not left to our own 30 s read timeout.
        let closed = match sock.read_to_end(&mut buf) {
            Ok(_) => true,
            Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
        };
        assert!(closed, "the server closed the slow request");
        // The counter is bumped as the connection's task ends: wait for it, not for a time.
        let deadline = Instant::now() + Duration::from_secs(30);
        while ep.counters.timeouts.load(Relaxed) < 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(ep.counters.timeouts.load(Relaxed), 1);
    }

    /// CPU time (user + system) of this process's threads named `name`, from /proc.
    fn threads_cpu(name: &str) -> Duration {
        let mut ticks = 0;
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim_end() == name {
                let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
                ticks += stat_cpu_ticks(&stat);
            }
        }
        Duration::from_millis(ticks * 10) // USER_HZ is 100
    }

    /// utime + stime (fields 14 and 15) of a /proc stat line.
    fn stat_cpu_ticks(stat: &str) -> u64 {
        let fields = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let mut fields = fields.split_whitespace().skip(11);
        let utime: u64 = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0);
        let stime: u64 = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0);
        utime + stime
    }

    /// Raises the soft fd limit to the hard one when it is below `need`.
    fn ensure_nofile(need: u64) {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the rlimit we own; no other memory is touched.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        if lim.rlim_cur < need {
            lim.rlim_cur = lim.rlim_max;
            // SAFETY: setrlimit only reads the rlimit we own.
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
        }
    }

    /// Issue 11: thousands of slow connections (one byte, then one a second) must not keep
    /// /metrics and /healthz from answering, and must not make the endpoint spin.
    #[test]
    fn answers_under_slow_connection_flood() {
        const ATTACK: usize = 2000;
        ensure_nofile(ATTACK as u64 + 500);
        // Nothing ticks here: a stall time longer than the test.
        let ep = start(EndpointConfig::new(Duration::from_secs(3600)));
        let opened = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let attacker = {
            let (opened, stop, addr) = (opened.clone(), stop.clone(), ep.addr);
            std::thread::spawn(move || {
                let mut held = Vec::with_capacity(ATTACK);
                let (t, mut slowest) = (Instant::now(), Duration::ZERO);
                while held.len() < ATTACK {
                    let c = Instant::now();
                    match std::net::TcpStream::connect(addr) {
                        Ok(mut s) => {
                            slowest = slowest.max(c.elapsed());
                            let _ = s.write_all(b"G");
                            held.push(s);
                            opened.fetch_add(1, Relaxed);
                        }
                        Err(e) => panic!("attacker connect {}: {e}", held.len()),
                    }
                }
                eprintln!(
                    "attacker: {ATTACK} connections opened in {:?}, slowest connect {slowest:?}",
                    t.elapsed()
                );
                while !stop.load(Relaxed) {
                    for s in &mut held {
                        let _ = s.write_all(b"E");
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            })
        };
        let timed = |path: &str| {
            let t = Instant::now();
            let r = get(ep.addr, "GET", path);
            (r, t.elapsed())
        };
        while opened.load(Relaxed) < ATTACK / 2 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let (m, m_mid) = timed("/metrics");
        let (h, h_mid) = timed("/healthz");
        assert_eq!((m.status, h.status), (200, 200));
        assert_eq!(m.body, b"# TYPE up gauge\nup 1\n# EOF\n");
        eprintln!(
            "during the flood ({} slow connections opened): /metrics in {m_mid:?}, /healthz in {h_mid:?}",
            opened.load(Relaxed)
        );
        while opened.load(Relaxed) < ATTACK {
            std::thread::sleep(Duration::from_millis(5));
        }
        let (m, m_after) = timed("/metrics");
        let (h, h_after) = timed("/healthz");
        assert_eq!((m.status, h.status), (200, 200));
        eprintln!("{ATTACK} slow connections held: /metrics in {m_after:?}, /healthz in {h_after:?}");

        // Every attacking connection but the last 64 was closed: evicted, or at its deadline.
        let c = &ep.counters;
        let t = Instant::now();
        while c.accepted.load(Relaxed) < ATTACK as u64 + 4 && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let (evicted, timeouts) = (c.evictions.load(Relaxed), c.timeouts.load(Relaxed));
        eprintln!(
            "accepted {}, evicted {evicted}, timed out {timeouts}, accept errors {}",
            c.accepted.load(Relaxed),
            c.accept_errors.load(Relaxed)
        );
        assert!(evicted > 0);
        assert!(evicted + timeouts >= (ATTACK - 64) as u64, "{evicted} + {timeouts}");

        // No spinning: the endpoint threads (this test's and any other test's, idle) use
        // little CPU during a second while the attacker still holds its connections.
        let before = threads_cpu("connlife-metrics");
        std::thread::sleep(Duration::from_secs(1));
        let used = threads_cpu("connlife-metrics") - before;
        eprintln!("endpoint threads' CPU during 1 s idle under attack: {used:?}");
        assert!(used < Duration::from_millis(300), "{used:?}");
        stop.store(true, Relaxed);
        attacker.join().unwrap();
    }

    /// A fake listener whose every accept fails with EMFILE.
    struct Emfile(Arc<AtomicUsize>);

    impl Accept for Emfile {
        type Io = TcpStream;
        async fn accept(&mut self) -> io::Result<TcpStream> {
            self.0.fetch_add(1, Relaxed);
            Err(io::Error::from_raw_os_error(libc::EMFILE))
        }
    }

    #[tokio::test]
    async fn accept_errors_back_off() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counters = Arc::new(EndpointCounters::default());
        let server = Server(Arc::new(Inner {
            state: Arc::default(),
            config: config(),
            now_ns,
            counters: counters.clone(),
        }));
        let _ = tokio::time::timeout(Duration::from_secs(1), server.run(Emfile(calls.clone()))).await;
        // 10 ms doubling: at 0, 10, 30, 70, 150, 310 and 630 ms.
        let calls = calls.load(Relaxed);
        assert!((2..=10).contains(&calls), "{calls} accepts in 1 s");
        assert_eq!(counters.accept_errors.load(Relaxed), calls as u64);
    }

    const CHILD_ENV: &str = "CONNLIFE_ENDPOINT_EMFILE_CHILD";

    /// Run by `real_emfile_does_not_spin` in a child process whose fd limit is 32: serves, and
    /// keeps its counters in /metrics.
    #[test]
    #[ignore = "run by real_emfile_does_not_spin"]
    fn emfile_child() {
        if std::env::var_os(CHILD_ENV).is_none() {
            return;
        }
        let ep = start(config());
        println!("PORT {}", ep.addr.port());
        std::io::stdout().flush().unwrap();
        for _ in 0..600 {
            let c = &ep.counters;
            ep.state.lock().unwrap().metrics = format!(
                "accept_errors {}\nevictions {}\n",
                c.accept_errors.load(Relaxed),
                c.evictions.load(Relaxed)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Issue 11 for real: the endpoint's process is out of fds (a limit of 32 below the cap of
    /// 64). It must not spin, and must still answer.
    #[test]
    fn real_emfile_does_not_spin() {
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("ulimit -n 32 && exec \"$0\" \"$@\"")
            .arg(&exe)
            .args(["--exact", "run::endpoint::tests::emfile_child"])
            .args(["--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port: u16 = loop {
            let line = lines.next().expect("child's port").unwrap();
            // libtest has written "test ... " on the same line before it.
            if let Some((_, p)) = line.split_once("PORT ") {
                break p.trim().parse().unwrap();
            }
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        // Fewer than the listen backlog, so every connect completes.
        let held: Vec<_> = (0..100)
            .map(|_| {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.write_all(b"G").unwrap();
                s
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let cpu = || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            Duration::from_millis(stat_cpu_ticks(&stat) * 10)
        };
        let before = cpu();
        std::thread::sleep(Duration::from_secs(1));
        let used = cpu() - before;
        let t = Instant::now();
        let r = request(
            addr,
            b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
            Duration::from_secs(10),
        );
        let latency = t.elapsed();
        let _ = child.kill();
        let _ = child.wait();
        drop(held);
        let r = r.unwrap();
        let body = String::from_utf8_lossy(&r.body).into_owned();
        eprintln!("out of fds with 100 slow connections: CPU {used:?} in 1 s; /metrics in {latency:?}: {body:?}");
        assert_eq!(r.status, 200);
        let errors: u64 = body
            .lines()
            .find_map(|l| l.strip_prefix("accept_errors "))
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert!(errors > 0, "no EMFILE seen: {body}");
        assert!(used < Duration::from_millis(300), "child used {used:?} of CPU in 1 s");
    }
}
