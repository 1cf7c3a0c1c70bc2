//! Go net/http origins from userspace: which executables get the `go` uprobes of the kernel
//! programs (connlife-ebpf/src/go.rs), and attaching them once per binary.
//!
//! net/http dials on a goroutine of its own, so the stack at connect() shows no caller; the
//! uprobes follow the request from the caller's goroutine to the connect syscall. They read
//! Go's register ABI on amd64, so a binary qualifies when it is amd64, built by Go 1.17 or
//! later (version from `.go.buildinfo`, else `runtime.buildVersion`) and has a symbol table
//! naming the four functions ([`GO_PROGRAMS`]). A stripped Go binary still gets native stacks
//! at connect(), which reach only net/http's dial goroutine.
//!
//! The uprobes attach to the file (its inode) for every process: the programs filter by tgid
//! in the kernel, so many processes of one binary attach once, keyed by device and inode.
use std::{
    collections::HashMap,
    fmt,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use aya::{
    programs::{
        uprobe::{UProbeAttachLocation, UProbeScope},
        UProbe,
    },
    Ebpf,
};
use connlife_common::GO_PROGRAMS;
use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol};

use crate::kernel::gopclntab::GoFunctions;

/// What [`crate::kernel::loader::Tracer::attach_go`] did for a process, in one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GoAttach {
    /// The uprobes are on this binary now.
    Attached { binary: PathBuf },
    /// Its binary already has them (another process of it, or this one before).
    AlreadyAttached,
    /// Not a Go program: native stacks only.
    NotGo,
    /// No executable to read: the process has exited (short-lived ones often do before they
    /// are looked at), or it is a kernel thread. Nothing to trace and nothing to say.
    Gone,
    /// Go without a symbol table nor a Go 1.18+ function table (`.gopclntab`) to find the
    /// functions by: native stacks only (they reach net/http's dial goroutine, not the caller).
    Stripped { binary: PathBuf },
    /// Go (or unreadable) but the uprobes cannot apply: not amd64, Go before 1.17, a function
    /// missing, or the executable unreadable.
    Unsupported { binary: PathBuf, reason: String },
}

impl fmt::Display for GoAttach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Attached { binary } => write!(f, "Go net/http origins traced in {}", binary.display()),
            Self::AlreadyAttached => write!(f, "Go net/http origins already traced in this binary"),
            Self::NotGo => write!(f, "not a Go program"),
            Self::Gone => write!(f, "gone before its executable was read"),
            Self::Stripped { binary } => write!(
                f,
                "{} is Go without symbols or a Go 1.18+ function table: native stacks only (net/http dials show no caller)",
                binary.display()
            ),
            Self::Unsupported { binary, reason } => {
                write!(f, "Go origins not traced in {}: {reason}", binary.display())
            }
        }
    }
}

/// What an executable is, for the Go uprobes (pure: from its bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GoBinary {
    NotGo,
    Stripped,
    Unsupported(String),
    /// File offset of each function of [`GO_PROGRAMS`], in that order.
    Probes(Vec<u64>),
}

/// The oldest Go with the register ABI on amd64 (g in r14, arguments in registers).
const MIN_GO_MINOR: u32 = 17;

/// Classify an ELF executable for the Go uprobes.
pub fn inspect(data: &[u8]) -> GoBinary {
    let Ok(file) = object::File::parse(data) else {
        return GoBinary::Unsupported("not an ELF file object can read".into());
    };
    let has_section = |name: &str| file.section_by_name(name).is_some();
    let runtime_main = file.symbols().any(|s| s.name() == Ok("runtime.main"));
    if !has_section(".go.buildinfo") && !has_section(".gopclntab") && !runtime_main {
        return GoBinary::NotGo;
    }
    if file.architecture() != object::Architecture::X86_64 {
        return GoBinary::Unsupported(format!(
            "{:?}: the uprobes read Go's amd64 registers",
            file.architecture()
        ));
    }
    let version = go_version(&file);
    match version.as_deref().and_then(go_minor) {
        Some(minor) if minor >= MIN_GO_MINOR => {}
        Some(_) => {
            return GoBinary::Unsupported(format!(
                "{} predates Go 1.17's register ABI",
                version.unwrap_or_default()
            ))
        }
        None => return GoBinary::Unsupported(format!("unknown Go version {version:?}")),
    }
    // Without a symbol table (stripped), Go's own function table still names every function.
    let pclntab = if runtime_main { None } else { GoFunctions::parse(data) };
    if !runtime_main && pclntab.is_none() {
        return GoBinary::Stripped;
    }
    let mut offsets = Vec::with_capacity(GO_PROGRAMS.len());
    for &(_, function) in GO_PROGRAMS {
        let address = match &pclntab {
            Some(table) => table.entry_of(function),
            None => file.symbols().find(|s| s.name() == Ok(function)).map(|s| s.address()),
        };
        let Some(address) = address else {
            return GoBinary::Unsupported(format!("{function} is absent (no net/http client in it?)"));
        };
        let Some(offset) = file_offset(&file, address) else {
            return GoBinary::Unsupported(format!("{function} at {address:#x} is in no segment"));
        };
        offsets.push(offset);
    }
    GoBinary::Probes(offsets)
}

/// The file offset of a virtual address (what a uprobe is attached at).
fn file_offset(file: &object::File, addr: u64) -> Option<u64> {
    file.segments().find_map(|seg| {
        let (start, size) = seg.file_range();
        (addr >= seg.address() && addr - seg.address() < size).then(|| start + (addr - seg.address()))
    })
}

/// `size` bytes at virtual address `addr` of the file's loaded image.
fn read_vaddr<'d>(file: &object::File<'d>, addr: u64, size: u64) -> Option<&'d [u8]> {
    file.segments()
        .find_map(|seg| seg.data_range(addr, size).ok().flatten())
}

/// The Go version the binary was built with ("go1.19.8"): from `.go.buildinfo`, else from the
/// `runtime.buildVersion` string.
pub fn go_version(file: &object::File) -> Option<String> {
    let from_buildinfo = file
        .section_by_name(".go.buildinfo")
        .and_then(|s| s.data().ok())
        .and_then(|data| buildinfo_version(data, |addr, size| read_vaddr(file, addr, size)));
    from_buildinfo.or_else(|| {
        let sym = file.symbols().find(|s| s.name() == Ok("runtime.buildVersion"))?;
        let little = file.is_little_endian();
        let ptr_size = if file.is_64() { 8 } else { 4 };
        go_string_at(sym.address(), ptr_size, little, &|addr, size| {
            read_vaddr(file, addr, size)
        })
    })
}

const BUILDINFO_MAGIC: &[u8] = b"\xff Go buildinf:";
/// `.go.buildinfo` flag: strings inline after the header (Go 1.18+), not pointed to.
const BUILDINFO_INLINE: u8 = 2;
const BUILDINFO_BIG_ENDIAN: u8 = 1;

/// The version string of a `.go.buildinfo` section (src/debug/buildinfo/buildinfo.go): a
/// 32-byte header (magic, pointer size, flags), then either the version inline as a
/// varint-prefixed string (1.18+) or, before, a pointer to a Go string header, read with
/// `read(addr, size)` from the loaded image.
pub fn buildinfo_version<'d>(data: &[u8], read: impl Fn(u64, u64) -> Option<&'d [u8]>) -> Option<String> {
    if data.len() < 32 || !data.starts_with(BUILDINFO_MAGIC) {
        return None;
    }
    let (ptr_size, flags) = (data[14] as usize, data[15]);
    if flags & BUILDINFO_INLINE != 0 {
        let (len, used) = uvarint(&data[32..])?;
        let start = 32 + used;
        let bytes = data.get(start..start.checked_add(usize::try_from(len).ok()?)?)?;
        return String::from_utf8(bytes.to_vec()).ok();
    }
    if ptr_size != 4 && ptr_size != 8 {
        return None;
    }
    let little = flags & BUILDINFO_BIG_ENDIAN == 0;
    let header_addr = read_uint(data.get(16..16 + ptr_size)?, little);
    go_string_at(header_addr, ptr_size, little, &read)
}

/// A Go string (`{data *byte; len int}`) whose header sits at `addr`.
fn go_string_at<'d>(
    addr: u64,
    ptr_size: usize,
    little: bool,
    read: &impl Fn(u64, u64) -> Option<&'d [u8]>,
) -> Option<String> {
    let header = read(addr, 2 * ptr_size as u64)?;
    let data = read_uint(&header[..ptr_size], little);
    let len = read_uint(&header[ptr_size..], little);
    if len > 256 {
        return None;
    }
    String::from_utf8(read(data, len)?.to_vec()).ok()
}

fn read_uint(b: &[u8], little: bool) -> u64 {
    let mut v = 0u64;
    for i in 0..b.len().min(8) {
        let byte = if little { b[b.len() - 1 - i] } else { b[i] };
        v = (v << 8) | byte as u64;
    }
    v
}

/// Go's `binary.Uvarint`: the value and the bytes it took.
fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some((v, i + 1));
        }
    }
    None
}

/// The minor version of a Go 1.x version string: "go1.19.8" -> 19, "go1.22rc1" -> 22,
/// "devel go1.23-abcdef ..." -> 23.
pub fn go_minor(version: &str) -> Option<u32> {
    let rest = &version[version.find("go1.")? + 4..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The Go uprobes of one loaded eBPF object: loaded on first use, attached once per binary.
#[derive(Default)]
pub struct GoProbes {
    loaded: bool,
    /// What each binary (device, inode) got.
    binaries: HashMap<(u64, u64), GoAttach>,
}

impl GoProbes {
    /// Attach the uprobes to the executable of `pid` unless its binary has them already.
    pub fn attach(&mut self, ebpf: &mut Ebpf, pid: u32) -> GoAttach {
        let exe = PathBuf::from(format!("/proc/{pid}/exe"));
        let binary = std::fs::read_link(&exe).unwrap_or_else(|_| exe.clone());
        let unsupported = |reason: String| GoAttach::Unsupported {
            binary: binary.clone(),
            reason,
        };
        let meta = match std::fs::metadata(&exe) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return GoAttach::Gone,
            Err(e) => return unsupported(format!("reading {}: {e}", exe.display())),
        };
        let key = (meta.dev(), meta.ino());
        match self.binaries.get(&key) {
            Some(GoAttach::Attached { .. } | GoAttach::AlreadyAttached) => return GoAttach::AlreadyAttached,
            Some(done) => return done.clone(),
            None => {}
        }
        // Mapped, not read: an agent meets every binary on the host, some of them hundreds of
        // MB; only the pages the ELF parser touches come in.
        let mapped = std::fs::File::open(&exe).and_then(|f| {
            // SAFETY: a read-only private mapping of a running executable (the kernel refuses
            // writes to it with ETXTBSY); the bytes are only parsed, never trusted as code.
            unsafe { memmap2::Mmap::map(&f) }
        });
        let outcome = match mapped {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => GoAttach::Gone,
            Err(e) => unsupported(format!("reading {}: {e}", exe.display())),
            Ok(data) => match inspect(&data) {
                GoBinary::NotGo => GoAttach::NotGo,
                GoBinary::Stripped => GoAttach::Stripped { binary: binary.clone() },
                GoBinary::Unsupported(reason) => unsupported(reason),
                GoBinary::Probes(offsets) => match self.attach_offsets(ebpf, &exe, &offsets) {
                    Ok(()) => GoAttach::Attached { binary: binary.clone() },
                    Err(reason) => unsupported(reason),
                },
            },
        };
        // An unreadable exe (the process may be gone) is not remembered: another process of
        // the binary may still be attached.
        if !matches!(&outcome, GoAttach::Gone)
            && !matches!(&outcome, GoAttach::Unsupported { reason, .. } if reason.starts_with("reading"))
        {
            self.binaries.insert(key, outcome.clone());
        }
        outcome
    }

    /// Load the programs once, then attach each at its offset; all or none stay attached.
    fn attach_offsets(&mut self, ebpf: &mut Ebpf, exe: &Path, offsets: &[u64]) -> Result<(), String> {
        if !self.loaded {
            for &(program, _) in GO_PROGRAMS {
                let prog: &mut UProbe = ebpf
                    .program_mut(program)
                    .ok_or_else(|| format!("program {program} missing from the object"))?
                    .try_into()
                    .map_err(|e| format!("program {program}: {e}"))?;
                prog.load().map_err(|e| format!("loading {program} (verifier): {e}"))?;
            }
            self.loaded = true;
        }
        let mut links = Vec::new();
        for (&(program, function), &offset) in GO_PROGRAMS.iter().zip(offsets) {
            let prog: &mut UProbe = ebpf
                .program_mut(program)
                .and_then(|p| p.try_into().ok())
                .ok_or_else(|| format!("program {program} missing"))?;
            match prog.attach(
                UProbeAttachLocation::AbsoluteOffset(offset),
                exe,
                UProbeScope::AllProcesses,
            ) {
                Ok(link) => links.push((program, link)),
                Err(e) => {
                    for (program, link) in links {
                        if let Some(prog) = ebpf.program_mut(program).and_then(|p| <&mut UProbe>::try_from(p).ok()) {
                            let _ = prog.detach(link);
                        }
                    }
                    return Err(format!("attaching a uprobe to {function}: {e}"));
                }
            }
        }
        Ok(())
    }
}

/// Test support: a small Go net/http client built with `go build FLAGS`, its bytes; `None`
/// (said on stdout) where `go` is not installed.
#[cfg(test)]
pub(crate) fn build_test_go_client(name: &str, flags: &[&str]) -> Option<Vec<u8>> {
    use std::process::Command;
    if Command::new("go").arg("version").output().is_err() {
        println!("skipped: no `go` on PATH");
        return None;
    }
    let dir = std::env::temp_dir().join(format!("connlife-go-client-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("main.go"),
        "package main\nimport \"net/http\"\nfunc main() { http.Get(\"http://127.0.0.1:1/\") }\n",
    )
    .unwrap();
    let status = Command::new("go")
        .args(["build", "-o", name])
        .args(flags)
        .arg("main.go")
        .current_dir(&dir)
        .env("GO111MODULE", "off")
        .status()
        .unwrap();
    assert!(status.success(), "go build {name}");
    let bytes = std::fs::read(dir.join(name)).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn inline_buildinfo(version: &str) -> Vec<u8> {
        let mut d = BUILDINFO_MAGIC.to_vec();
        d.push(8);
        d.push(BUILDINFO_INLINE);
        d.resize(32, 0);
        d.push(version.len() as u8);
        d.extend_from_slice(version.as_bytes());
        d.push(0); // the module info's length follows
        d
    }

    #[test]
    fn reads_the_inline_version_of_go_1_18_and_later() {
        let none = |_: u64, _: u64| -> Option<&'static [u8]> { None };
        assert_eq!(
            buildinfo_version(&inline_buildinfo("go1.19.8"), none).as_deref(),
            Some("go1.19.8")
        );
        assert_eq!(buildinfo_version(b"\xff Go buildinf:", none), None, "short header");
        let mut bad = inline_buildinfo("go1.19.8");
        bad[0] = 0;
        assert_eq!(buildinfo_version(&bad, none), None, "no magic");
        let mut truncated = inline_buildinfo("go1.19.8");
        truncated.truncate(36);
        assert_eq!(buildinfo_version(&truncated, none), None, "length past the end");
    }

    #[test]
    fn follows_the_version_pointer_of_go_before_1_18() {
        // Header at 16 points to a string header at 0x1000: {data 0x2000, len 8}.
        let mut d = BUILDINFO_MAGIC.to_vec();
        d.extend_from_slice(&[8, 0]);
        d.extend_from_slice(&0x1000u64.to_le_bytes());
        d.extend_from_slice(&0u64.to_le_bytes());
        const HEADER: [u8; 16] = [0x00, 0x20, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0];
        let image = |addr: u64, size: u64| -> Option<&[u8]> {
            match (addr, size) {
                (0x1000, 16) => Some(&HEADER),
                (0x2000, 8) => Some(b"go1.16.3"),
                _ => None,
            }
        };
        assert_eq!(buildinfo_version(&d, image).as_deref(), Some("go1.16.3"));
    }

    #[test]
    fn minor_versions() {
        assert_eq!(go_minor("go1.19.8"), Some(19));
        assert_eq!(go_minor("go1.17"), Some(17));
        assert_eq!(go_minor("go1.22rc1"), Some(22));
        assert_eq!(go_minor("devel go1.23-abcdef Tue"), Some(23));
        assert_eq!(go_minor("go2"), None);
        assert_eq!(go_minor(""), None);
    }

    #[test]
    fn varints() {
        assert_eq!(uvarint(&[5]), Some((5, 1)));
        assert_eq!(uvarint(&[0x80 | 44, 2]), Some((300, 2)));
        assert_eq!(uvarint(&[0x80]), None);
    }

    #[test]
    fn non_elf_and_non_go_files() {
        assert!(matches!(inspect(b"#!/bin/sh\n"), GoBinary::Unsupported(_)));
        let own = std::fs::read("/proc/self/exe").unwrap();
        assert_eq!(inspect(&own), GoBinary::NotGo, "this Rust test binary");
    }

    /// A real Go binary, built here when `go` is installed: symbols found at their file
    /// offsets, and the stripped build told apart.
    #[test]
    fn a_real_go_net_http_client() {
        let (Some(full), Some(stripped)) = (
            build_test_go_client("full", &[]),
            build_test_go_client("stripped", &["-ldflags=-s -w"]),
        ) else {
            return;
        };

        let file = object::File::parse(&*full).unwrap();
        let version = go_version(&file).expect("a version");
        assert!(go_minor(&version).unwrap() >= 17, "{version}");
        let GoBinary::Probes(offsets) = inspect(&full) else {
            panic!("{:?}", inspect(&full))
        };
        for (&(_, function), &offset) in GO_PROGRAMS.iter().zip(&offsets) {
            let sym = file.symbols().find(|s| s.name() == Ok(function)).unwrap();
            // The bytes at the file offset are the function's first instructions.
            let text = file.section_by_name(".text").unwrap();
            let at = (sym.address() - text.address()) as usize;
            let code = text.data().unwrap();
            assert_eq!(&full[offset as usize..][..16], &code[at..at + 16], "{function}");
        }
        // Stripped: the same functions at the same offsets, found in Go's own function table.
        assert_eq!(inspect(&stripped), GoBinary::Probes(offsets));
    }

    const ORIGIN_PROGRAM: &str = r#"package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

// A new Transport per request: the leak the origin is meant to find.
//go:noinline
func leakyPost(url string) {
	tr := &http.Transport{}
	c := &http.Client{Transport: tr}
	resp, err := c.Post(url, "text/plain", bytes.NewBufferString("hi"))
	if err != nil {
		fmt.Println("err", err)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	fmt.Printf("transport %p\n", tr)
}

//go:noinline
func plainDial(addr string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		fmt.Println("err", err)
		return
	}
	c.Close()
}

func main() {
	if os.Args[1] == "serve" {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		fmt.Println(l.Addr().String())
		http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Write([]byte("ok"))
		}))
		return
	}
	bufio.NewReader(os.Stdin).ReadString('\n')
	plainDial(os.Args[2])
	for i := 0; i < 3; i++ {
		leakyPost("http://" + os.Args[2] + "/")
	}
	fmt.Println("done")
	time.Sleep(300 * time.Millisecond)
}
"#;

    /// Function names of `addrs` in `binary`, by `go tool addr2line` (for this check only).
    fn go_addr2line(binary: &Path, addrs: &[u64]) -> Vec<String> {
        use std::io::Write;
        let mut child = Command::new("go")
            .args(["tool", "addr2line"])
            .arg(binary)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let input: String = addrs.iter().map(|a| format!("{a:#x}\n")).collect();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .step_by(2) // function, then file:line
            .map(str::to_string)
            .collect()
    }

    /// Root only: a Go net/http client making a new Transport per request in
    /// `main.leakyPost`, and a net.Dial on its main goroutine, traced with origins on. Run with
    /// `cargo test --release -p connlife --lib -- --ignored --nocapture go_origins`.
    #[test]
    #[ignore = "needs root, go and the real eBPF object"]
    fn go_origins_of_a_real_net_http_client() {
        use crate::kernel::{
            event::{Kind, TcpState},
            loader::{Filter, Tracer},
        };
        use std::io::{BufRead, BufReader, Write};
        let dir = std::env::temp_dir().join(format!("connlife-go-origins-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("main.go"), ORIGIN_PROGRAM).unwrap();
        let bin = dir.join("origins");
        let st = Command::new("go")
            .args(["build", "-o"])
            .arg(&bin)
            .arg("main.go")
            .current_dir(&dir)
            .env("GO111MODULE", "off")
            .status()
            .unwrap();
        assert!(st.success());
        let piped = std::process::Stdio::piped;
        let mut server = Command::new(&bin).arg("serve").stdout(piped()).spawn().unwrap();
        let mut addr = String::new();
        BufReader::new(server.stdout.take().unwrap())
            .read_line(&mut addr)
            .unwrap();
        let addr = addr.trim().to_string();
        let mut client = Command::new(&bin)
            .args(["client", &addr])
            .stdin(piped())
            .stdout(piped())
            .spawn()
            .unwrap();

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _enter = rt.enter();
        let filter = Filter {
            pids: vec![client.id(), server.id()],
            comms: Vec::new(),
            origin: true,
            fold: false,
        };
        let mut tracer = Tracer::load(&filter).unwrap();
        let mut events = tracer.take_events().unwrap();
        println!("client: {}", tracer.attach_go(client.id()));
        println!("server: {}", tracer.attach_go(server.id()));
        println!("self:   {}", tracer.attach_go(std::process::id()));

        client.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let out = client.wait_with_output().unwrap();
        println!("{}", String::from_utf8_lossy(&out.stdout));
        std::thread::sleep(std::time::Duration::from_millis(200));
        let mut got = Vec::new();
        events.drain(&mut got);
        let _ = server.kill();
        let _ = server.wait();

        let mut transports = std::collections::BTreeSet::new();
        let (mut leaky, mut plain) = (0, 0);
        for ev in got.into_iter().map(Result::unwrap) {
            let birth = ev.kind == Kind::Accept || ev.new_state == Some(TcpState::SynSent);
            if !birth {
                continue;
            }
            let o = ev.origin.unwrap_or_default();
            println!(
                "{:?} pid {:?} {:?} -> {:?}: {:?}",
                ev.kind, ev.tgid, ev.local, ev.remote, o
            );
            let frames = |id: Option<u32>| id.and_then(|id| tracer.stack(id)).unwrap_or_default();
            let native = frames(o.stack);
            let native_names = go_addr2line(&bin, &native);
            println!("  native stack: {:x?}", native);
            for f in &native_names {
                println!("    {f}");
            }
            let request = frames(o.request_stack);
            if !request.is_empty() {
                let names = go_addr2line(&bin, &request);
                println!("  request stack: {:x?}", request);
                for f in &names {
                    println!("    {f}");
                }
                assert!(names.iter().any(|f| f == "main.leakyPost"), "{names:?}");
                leaky += 1;
                transports.insert(o.transport.expect("a Transport with the request"));
            } else if ev.kind == Kind::State && native_names.iter().any(|f| f == "main.plainDial") {
                plain += 1;
            }
        }
        println!("transports: {transports:x?}");
        println!("counters: {:?}", tracer.counters().unwrap());
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(leaky, 3, "each leakyPost connection carries its request stack");
        assert_eq!(transports.len(), 3, "one Transport per request");
        assert_eq!(
            plain, 1,
            "net.Dial on the main goroutine: its native stack reaches main"
        );
    }
}
