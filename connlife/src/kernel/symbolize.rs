//! Turns the user stacks captured at a connection's birth into [`Frame`]s, on a thread of its
//! own so the event loop never waits on DWARF parsing: requests go in through a bounded queue
//! ([`SymbolizerThread::request`] never blocks; a full queue drops and counts), results come back
//! on a tokio channel. The process may exit right after its connection is born, so a request is
//! symbolized as soon as it arrives, and each result is cached by pid and addresses, so the same
//! stack asked for again (every connection of an accept loop) costs a hash lookup and still
//! resolves after the process is gone.
//!
//! blazesym does the work: one `Symbolizer` for the thread's life keeps every parsed ELF/DWARF
//! file (keyed by the file, so a binary shared by many processes is parsed once). Go 1.19 writes
//! its `.debug_*` sections zlib-compressed (`SHF_COMPRESSED`), which blazesym reads with its
//! `zlib` feature; functions come from DWARF or the ELF symbol table, file:line from DWARF. A
//! stripped binary has neither: its frames get the module and file offset from blazesym's
//! normalizer instead. Inlined calls are expanded: an address inside `f` at an inlined call to
//! `g` gives two frames with the same `addr`, `g` (at the line inside `g`) then `f` (at the line
//! of the call), innermost first like the rest of the stack.
use std::{
    collections::{HashMap, HashSet},
    path::Path,
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError},
        Arc,
    },
    thread,
    time::Duration,
};

use blazesym::{
    normalize::{Normalizer, UserMeta},
    symbolize::{
        source::{Process, Source},
        CodeInfo, Input, Sym, Symbolized as BlazeSymbolized, Symbolizer,
    },
    Pid,
};
use log::{debug, warn};

use crate::{kernel::gopclntab::GoFunctions, model::origin::Frame};

/// Requests waiting for the thread; beyond this they are dropped and counted.
pub const QUEUE_CAPACITY: usize = 1024;
/// Stacks kept by (pid, addresses); the cache starts over when it is full.
const CACHE_CAPACITY: usize = 4096;
/// Pids already logged as gone (one line per pid); forgotten when full.
const LOGGED_PIDS_CAPACITY: usize = 4096;
/// After this long without a request, the symbolizer lets go of the binaries it parsed (a
/// program's DWARF is megabytes; an agent on a quiet host should not keep it).
const IDLE: Duration = Duration::from_secs(10);

/// A captured user stack to symbolize: instruction addresses in `pid`, innermost first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymbolizeRequest {
    pub pid: u32,
    /// The kernel's stack id, passed through to the result so the caller can match it.
    pub stack_id: u32,
    pub addrs: Vec<u64>,
}

/// The frames of one request, innermost first (at least one per address).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbolized {
    pub pid: u32,
    pub stack_id: u32,
    pub frames: Vec<Frame>,
}

/// Runs on its own thread; requests and results go through channels, so the event loop never waits.
/// Dropping it closes the queue and the thread ends after the request in hand (not joined: a
/// large DWARF parse must not hold up shutdown).
#[derive(Debug)]
pub struct SymbolizerThread {
    requests: SyncSender<SymbolizeRequest>,
    dropped: Arc<AtomicU64>,
    /// Times the thread let go of the binaries it had parsed (idle for [`IDLE`]).
    released: Arc<AtomicU64>,
}

impl SymbolizerThread {
    /// Starts the thread; it ends when this is dropped or `results`' receiver is.
    pub fn spawn(results: tokio::sync::mpsc::UnboundedSender<Symbolized>) -> Self {
        Self::spawn_with_idle(results, IDLE)
    }

    /// [`Self::spawn`] with another idle time before the parsed binaries are let go.
    fn spawn_with_idle(results: tokio::sync::mpsc::UnboundedSender<Symbolized>, idle: Duration) -> Self {
        let (requests, queue) = mpsc::sync_channel(QUEUE_CAPACITY);
        let dropped = Arc::new(AtomicU64::new(0));
        let released = Arc::new(AtomicU64::new(0));
        let released_by_thread = Arc::clone(&released);
        let spawned = thread::Builder::new()
            .name("connlife-symbolize".into())
            .spawn(move || run(queue, results, idle, &released_by_thread));
        if let Err(e) = spawned {
            // Every request will then count as dropped: visible, and the tracer keeps running.
            warn!("symbolizer thread not started, stacks will not be symbolized: {e}");
        }
        SymbolizerThread {
            requests,
            dropped,
            released,
        }
    }

    /// Queues a stack for symbolization; never blocks. A full queue (or a thread that is gone)
    /// drops the request and counts it in [`Self::dropped`].
    pub fn request(&self, req: SymbolizeRequest) {
        match self.requests.try_send(req) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Requests dropped so far: the queue was full (or the thread could not be started).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Times the thread let go of the binaries it had parsed, after an idle time.
    pub fn released(&self) -> u64 {
        self.released.load(Ordering::Relaxed)
    }
}

/// The thread's loop: a cache of symbolized stacks for its whole life, and a Symbolizer (with
/// the binaries it has parsed) from a request until the queue has been idle for `idle`.
fn run(
    queue: Receiver<SymbolizeRequest>,
    results: tokio::sync::mpsc::UnboundedSender<Symbolized>,
    idle: Duration,
    released: &AtomicU64,
) {
    let mut symbolizer: Option<Symbolizer> = None;
    let mut cache: HashMap<(u32, Vec<u64>), Vec<Frame>> = HashMap::new();
    let mut logged_gone: HashSet<u32> = HashSet::new();
    loop {
        let SymbolizeRequest { pid, stack_id, addrs } = match queue.recv_timeout(idle) {
            Ok(req) => req,
            Err(RecvTimeoutError::Timeout) => {
                if symbolizer.take().is_some() {
                    crate::give_back_freed_memory();
                    released.fetch_add(1, Ordering::Relaxed);
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let key = (pid, addrs);
        let frames = match cache.get(&key) {
            Some(frames) => frames.clone(),
            None => {
                let symbolizer = symbolizer.get_or_insert_with(Symbolizer::new);
                let frames = match try_symbolize_process(symbolizer, pid, &key.1) {
                    Ok(frames) => frames,
                    Err(e) => {
                        if logged_gone.len() >= LOGGED_PIDS_CAPACITY {
                            logged_gone.clear();
                        }
                        if logged_gone.insert(pid) {
                            debug!("stacks of pid {pid} not symbolized (process gone?): {e}");
                        }
                        bare(&key.1)
                    }
                };
                // Only what was resolved is cached: a later request may find the process again.
                if frames.iter().any(|f| f.function.is_some() || f.module.is_some()) {
                    if cache.len() >= CACHE_CAPACITY {
                        cache.clear();
                    }
                    cache.insert(key, frames.clone());
                }
                frames
            }
        };
        if results.send(Symbolized { pid, stack_id, frames }).is_err() {
            return;
        }
    }
}

/// Symbolizes `addrs` (innermost first) in the live process `pid`: at least one frame per
/// address, more where calls were inlined. A process that is gone, or any other failure, gives
/// frames with only `addr`. Return addresses (all but the first) are looked up at `addr - 1`, so
/// their line is the call's line; `addr` stays as captured.
pub fn symbolize_process(symbolizer: &Symbolizer, pid: u32, addrs: &[u64]) -> Vec<Frame> {
    try_symbolize_process(symbolizer, pid, addrs).unwrap_or_else(|_| bare(addrs))
}

fn bare(addrs: &[u64]) -> Vec<Frame> {
    addrs.iter().copied().map(Frame::bare).collect()
}

fn try_symbolize_process(symbolizer: &Symbolizer, pid: u32, addrs: &[u64]) -> Result<Vec<Frame>, blazesym::Error> {
    if addrs.is_empty() {
        return Ok(Vec::new());
    }
    let lookups: Vec<u64> = addrs
        .iter()
        .enumerate()
        .map(|(i, &addr)| if i == 0 { addr } else { addr.saturating_sub(1) })
        .collect();
    let source = Source::Process(Process::new(Pid::from(pid)));
    let symbolized = symbolizer.symbolize(&source, Input::AbsAddr(&lookups))?;

    let mut frames = Vec::with_capacity(addrs.len());
    let mut unknown = Vec::new();
    for (&addr, sym) in addrs.iter().zip(&symbolized) {
        match sym {
            BlazeSymbolized::Sym(sym) => push_sym_frames(&mut frames, addr, sym),
            BlazeSymbolized::Unknown(_) => {
                unknown.push(frames.len());
                frames.push(Frame::bare(addr));
            }
        }
    }
    if !unknown.is_empty() {
        add_modules(pid, &mut frames, &unknown);
    }
    Ok(frames)
}

/// The frames for one symbolized address: inlined calls innermost first, then the function.
fn push_sym_frames(frames: &mut Vec<Frame>, addr: u64, sym: &Sym<'_>) {
    let module = sym.module.as_deref().map(|m| m.to_string_lossy().into_owned());
    for inlined in sym.inlined.iter().rev() {
        let (file, line) = code_location(inlined.code_info.as_ref());
        frames.push(Frame {
            addr,
            function: Some(inlined.name.to_string()),
            file,
            line,
            module: module.clone(),
            offset: None,
        });
    }
    let (file, line) = code_location(sym.code_info.as_deref());
    frames.push(Frame {
        addr,
        function: Some(sym.name.to_string()),
        file,
        line,
        module,
        offset: None,
    });
}

fn code_location(info: Option<&CodeInfo<'_>>) -> (Option<String>, Option<u32>) {
    match info {
        Some(info) => (Some(info.to_path().to_string_lossy().into_owned()), info.line),
        None => (None, None),
    }
}

/// For addresses no symbol covers (a stripped binary, an anonymous mapping): the file they lie
/// in and their offset in it, from the process's memory map.
fn add_modules(pid: u32, frames: &mut [Frame], unknown: &[usize]) {
    let addrs: Vec<u64> = unknown.iter().map(|&i| frames[i].addr).collect();
    let normalizer = Normalizer::builder().enable_build_ids(false).build();
    let Ok(output) = normalizer.normalize_user_addrs(Pid::from(pid), &addrs) else {
        return;
    };
    for (&i, &(offset, meta)) in unknown.iter().zip(&output.outputs) {
        if let Some(UserMeta::Elf(elf)) = output.meta.get(meta) {
            frames[i].module = Some(display_path(&elf.path));
            frames[i].offset = Some(offset);
            // A return address (all but the innermost frame) names its call, just before it.
            let lookup = if i == 0 { offset } else { offset.saturating_sub(1) };
            frames[i].function = go_function_at(&elf.path, lookup);
        }
    }
}

/// Binaries whose Go function table is kept (the symbolizer thread's own).
const GO_TABLES_CAPACITY: usize = 64;

thread_local! {
    /// Go function tables by binary path; `None`: not Go, or no Go 1.18+ table.
    static GO_TABLES: std::cell::RefCell<HashMap<std::path::PathBuf, Option<std::rc::Rc<GoFunctions>>>> =
        Default::default();
}

/// The function at `offset` of a stripped Go binary, from Go's own function table (blazesym
/// reads symbol tables and DWARF, which `-ldflags=-s -w` or `strip` remove; `.gopclntab`
/// stays). Names only: no file or line.
fn go_function_at(path: &Path, offset: u64) -> Option<String> {
    let table = GO_TABLES.with(|tables| {
        let mut tables = tables.borrow_mut();
        if let Some(t) = tables.get(path) {
            return t.clone();
        }
        if tables.len() >= GO_TABLES_CAPACITY {
            tables.clear();
        }
        let parsed = std::fs::File::open(path)
            .ok()
            // SAFETY: a read-only private mapping of a binary the process runs (writes to it
            // fail with ETXTBSY); its bytes are only parsed.
            .and_then(|f| unsafe { memmap2::Mmap::map(&f) }.ok())
            .and_then(|data| GoFunctions::parse(&data))
            .map(std::rc::Rc::new);
        tables.insert(path.to_path_buf(), parsed.clone());
        parsed
    })?;
    table.function_at_file_offset(offset).map(str::to_string)
}

fn display_path(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use std::{
        io::{BufRead as _, BufReader},
        path::PathBuf,
        process::{Child, Command, Stdio},
    };

    use super::*;
    use crate::model::origin::{call_site, describe, describe_chain, is_internal};

    /// A child that prints a line and sleeps, killed when the test ends.
    struct Running(Child);

    impl Drop for Running {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Runs `program`, returns it and the hex addresses on its first line.
    fn run_and_read_addrs(program: &Path) -> (Running, Vec<u64>) {
        let mut child = Running(
            Command::new(program)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("running {}: {e}", program.display())),
        );
        let mut line = String::new();
        BufReader::new(child.0.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addrs = line
            .split_whitespace()
            .map(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).unwrap())
            .collect();
        (child, addrs)
    }

    fn tool(name: &str) -> bool {
        let found = Command::new(name)
            .arg(if name == "go" { "version" } else { "--version" })
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            eprintln!("skipped: `{name}` is not installed");
        }
        found
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("connlife-symbolize-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn check(status: std::io::Result<std::process::Output>, what: &str) {
        let out = status.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A stack as the kernel would capture it at connect(), innermost first: an address inside
    /// libc's `connect` (its module and name are real), one inside `leaky_dial`'s first instruction
    /// (line 5, with or without `endbr64`) and `leaky_dial`'s return address in `main`.
    const LEAK_C: &str = r#"#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

__attribute__((noinline)) void leaky_dial(void) {
    printf("%p %p %p\n", (void *)((char *)connect + 1), (void *)((char *)leaky_dial + 1),
           __builtin_return_address(0));
    fflush(stdout);
    sleep(60);
}

int main(void) {
    leaky_dial();
    return 0;
}
"#;
    const LEAK_C_CALL_LINE: u32 = 13;

    fn build_c(dir: &Path) -> PathBuf {
        let src = dir.join("leak.c");
        std::fs::write(&src, LEAK_C).unwrap();
        let bin = dir.join("leak");
        check(
            Command::new("gcc")
                .args(["-g", "-O0", "-fno-omit-frame-pointer", "-o"])
                .arg(&bin)
                .arg(&src)
                .output(),
            "gcc",
        );
        bin
    }

    #[test]
    fn c_function_file_and_line_and_the_call_line_of_a_return_address() {
        if !tool("gcc") {
            return;
        }
        let dir = temp_dir("c");
        let bin = build_c(&dir);
        let (child, addrs) = run_and_read_addrs(&bin);
        let symbolizer = Symbolizer::new();
        let frames = symbolize_process(&symbolizer, child.0.id(), &addrs);
        eprintln!("{frames:#?}");
        assert_eq!(frames.len(), 3);
        // libc: a name and a module (and file:line where its debug info is installed, as here).
        let libc = frames[0].module.as_deref().unwrap();
        assert!(
            libc.rsplit('/').next().unwrap().starts_with("libc.so"),
            "{:?}",
            frames[0]
        );
        assert!(frames[0].function.is_some(), "{:?}", frames[0]);
        assert!(is_internal(&frames[0]));
        // A return address one byte into leaky_dial is looked up at its entry.
        assert_eq!(frames[1].addr, addrs[1]);
        assert_eq!(frames[1].function.as_deref(), Some("leaky_dial"));
        assert!(
            frames[1].file.as_deref().unwrap().ends_with("/leak.c"),
            "{:?}",
            frames[1]
        );
        assert_eq!(frames[1].line, Some(5));
        assert_eq!(frames[1].module.as_deref(), Some(bin.to_str().unwrap()));
        // The return address is kept; its line is the call's, not the next statement's.
        assert_eq!(frames[2].addr, addrs[2]);
        assert_eq!(frames[2].function.as_deref(), Some("main"));
        assert_eq!(frames[2].line, Some(LEAK_C_CALL_LINE));
        assert_eq!(
            describe_chain(&frames, 3),
            format!("leaky_dial (leak.c:5) <- main (leak.c:{LEAK_C_CALL_LINE})")
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn stripped_c_binary_gives_module_and_offset() {
        if !tool("gcc") || !tool("strip") {
            return;
        }
        let dir = temp_dir("c-stripped");
        let bin = build_c(&dir);
        let stripped = dir.join("leak.stripped");
        check(
            Command::new("strip").arg("-o").arg(&stripped).arg(&bin).output(),
            "strip",
        );
        let (child, addrs) = run_and_read_addrs(&stripped);
        let frames = symbolize_process(&Symbolizer::new(), child.0.id(), &addrs);
        eprintln!("{frames:#?}");
        assert_eq!(frames.len(), 3);
        assert!(is_internal(&frames[0]), "libc keeps its symbols: {:?}", frames[0]);
        // The name in the symbol table of the unstripped copy, at the same file offset.
        let nm = Command::new("nm").arg(&bin).output().unwrap();
        let leaky_dial = String::from_utf8_lossy(&nm.stdout)
            .lines()
            .find_map(|l| {
                l.strip_suffix(" T leaky_dial")
                    .map(|a| u64::from_str_radix(a, 16).unwrap())
            })
            .unwrap();
        assert_eq!(frames[1].function, None);
        assert_eq!(frames[1].module.as_deref(), Some(stripped.to_str().unwrap()));
        // The offset is that of the address as captured (one byte into leaky_dial); gcc's PIE maps
        // its text at a file offset equal to its virtual address.
        assert_eq!(frames[1].offset, Some(leaky_dial + 1));
        assert_eq!(
            describe(&frames[1]),
            format!("{}+{:#x}", stripped.display(), leaky_dial + 1)
        );
        assert_eq!(frames[2].function, None);
        assert_eq!(call_site(&frames), Some(&frames[1]));
        let _ = std::fs::remove_dir_all(dir);
    }

    const LEAK_GO: &str = r#"package main

import (
	"fmt"
	"reflect"
	"time"
)

//go:noinline
func leakyPost() uintptr {
	return reflect.ValueOf(leakyPost).Pointer()
}

func main() {
	fmt.Printf("%x\n", leakyPost()+1)
	time.Sleep(60 * time.Second)
}
"#;

    fn build_go(dir: &Path) -> PathBuf {
        let src = dir.join("main.go");
        std::fs::write(&src, LEAK_GO).unwrap();
        let bin = dir.join("leak");
        let mut go = Command::new("go");
        go.arg("build").arg("-o").arg(&bin).arg(&src).current_dir(dir);
        if std::env::var_os("HOME").is_none() {
            go.env("GOCACHE", dir.join("gocache"));
        }
        check(go.output(), "go build");
        bin
    }

    #[test]
    fn go_function_file_and_line_from_compressed_dwarf() {
        if !tool("go") {
            return;
        }
        let dir = temp_dir("go");
        let bin = build_go(&dir);
        let (child, addrs) = run_and_read_addrs(&bin);
        let frames = symbolize_process(&Symbolizer::new(), child.0.id(), &addrs);
        eprintln!("{frames:#?}");
        assert_eq!(frames[0].function.as_deref(), Some("main.leakyPost"));
        assert!(
            frames[0].file.as_deref().unwrap().ends_with("/main.go"),
            "{:?}",
            frames[0]
        );
        assert_eq!(frames[0].line, Some(10));
        assert_eq!(frames[0].module.as_deref(), Some(bin.to_str().unwrap()));
        assert_eq!(describe(&frames[0]), "main.leakyPost (main.go:10)");

        let stripped = dir.join("leak.stripped");
        if tool("strip") {
            check(
                Command::new("strip").arg("-o").arg(&stripped).arg(&bin).output(),
                "strip",
            );
            let (child, addrs) = run_and_read_addrs(&stripped);
            let frames = symbolize_process(&Symbolizer::new(), child.0.id(), &addrs);
            eprintln!("{frames:#?}");
            assert_eq!(frames.len(), 1);
            // No symbols nor DWARF: the name comes from Go's own function table, no line.
            assert_eq!(frames[0].function.as_deref(), Some("main.leakyPost"));
            assert_eq!(frames[0].line, None);
            assert_eq!(frames[0].module.as_deref(), Some(stripped.to_str().unwrap()));
            // Go's non-PIE text segment starts at 0x400000 with file offset 0.
            assert_eq!(frames[0].offset, Some(addrs[0] - 0x400000));
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_gone_process_gives_bare_addresses() {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let addrs = [0x401000, 0x7f00_0000_1234];
        let frames = symbolize_process(&Symbolizer::new(), pid, &addrs);
        assert_eq!(frames, vec![Frame::bare(0x401000), Frame::bare(0x7f00_0000_1234)]);
        assert!(symbolize_process(&Symbolizer::new(), pid, &[]).is_empty());
    }

    #[test]
    fn the_thread_answers_each_request_and_caches_what_it_resolved() {
        if !tool("gcc") {
            return;
        }
        let dir = temp_dir("thread");
        let bin = build_c(&dir);
        let (child, addrs) = run_and_read_addrs(&bin);
        let pid = child.0.id();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let symbolizer = SymbolizerThread::spawn(tx);
        let req = |stack_id| SymbolizeRequest {
            pid,
            stack_id,
            addrs: addrs.clone(),
        };
        symbolizer.request(req(7));
        let first = rx.blocking_recv().unwrap();
        assert_eq!((first.pid, first.stack_id), (pid, 7));
        assert_eq!(
            call_site(&first.frames).and_then(|f| f.function.as_deref()),
            Some("leaky_dial")
        );
        // The process is gone, the cache still knows its stack.
        drop(child);
        symbolizer.request(req(8));
        let second = rx.blocking_recv().unwrap();
        assert_eq!(second.stack_id, 8);
        assert_eq!(second.frames, first.frames);
        assert_eq!(symbolizer.dropped(), 0);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Idle, the thread lets go of what it parsed (once), and a later request still resolves:
    /// the symbolizer is made again.
    #[test]
    fn an_idle_thread_lets_go_of_its_parsed_binaries_and_still_answers() {
        if !tool("gcc") {
            return;
        }
        let dir = temp_dir("idle");
        let bin = build_c(&dir);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let symbolizer = SymbolizerThread::spawn_with_idle(tx, Duration::from_millis(200));
        let leaky_dial = |s: &Symbolized| call_site(&s.frames).and_then(|f| f.function.clone());
        for round in 0..2u32 {
            // A new process each round: the cache of stacks cannot answer, the symbolizer must.
            let (child, addrs) = run_and_read_addrs(&bin);
            let pid = child.0.id();
            symbolizer.request(SymbolizeRequest {
                pid,
                stack_id: round,
                addrs,
            });
            let got = rx.blocking_recv().unwrap();
            assert_eq!(leaky_dial(&got).as_deref(), Some("leaky_dial"), "round {round}");
            // Released once per idle spell, whatever the timing: none is left to release after.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while symbolizer.released() <= u64::from(round) && std::time::Instant::now() < deadline {
                thread::sleep(Duration::from_millis(50));
            }
            assert_eq!(
                symbolizer.released(),
                u64::from(round) + 1,
                "released after idle, round {round}"
            );
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (requests, _queue) = mpsc::sync_channel(1);
        let symbolizer = SymbolizerThread {
            requests,
            dropped: Arc::new(AtomicU64::new(0)),
            released: Arc::new(AtomicU64::new(0)),
        };
        for stack_id in 0..3 {
            symbolizer.request(SymbolizeRequest {
                pid: 1,
                stack_id,
                addrs: vec![1],
            });
        }
        assert_eq!(symbolizer.dropped(), 2);
    }
}
