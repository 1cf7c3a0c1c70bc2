//! Where a connection came from: the symbolized user stack captured at its birth (connect(),
//! accept(), or Go's `net/http.(*Transport).roundTrip`) as [`Frame`]s, innermost first, and the
//! pure rules that pick the user's own code out of it ([`is_internal`], [`call_site`]) and print
//! it ([`describe`], [`describe_chain`]). Symbolization itself (I/O) is `kernel::symbolize`.
//!
//! What counts as *internal* (not the user's code):
//! - **Language runtimes and standard libraries**: Go's standard library and runtime, recognised
//!   by the rule Go itself uses for import paths: a standard package's path has no dot in its first
//!   element (`net/http.(*Client).Do`, `runtime.goexit`, `vendor/golang.org/x/net/...`), while
//!   every other package has a domain there (`github.com/x/y.F`); `main` is always the user's.
//!   Rust's and C++'s `std`, `core`, `alloc` (and `__gnu_cxx`), compiler-generated helpers
//!   (`_start`, Go's `type..eq.*`, cgo trampolines).
//! - **The system's C libraries and the network plumbing a connection is made through**, by the
//!   file name of the shared object: glibc (`libc`, `ld-linux`, `libpthread`, `libdl`, `libresolv`,
//!   `libnss_*` …), `libstdc++`, `libgcc_s`, and the HTTP/TLS client libraries `libcurl`,
//!   `libssl`, `libcrypto`, `libgnutls`, `libnghttp2`, plus the vDSO. libcurl is to a C program
//!   what net/http is to a Go one: the connect() happens deep inside it, and the question "who made
//!   this connection" is answered by its caller.
//! - **Rust's async network plumbing** (`tokio`, `mio`, `socket2`, `hyper`, `hyper_util`, `h2`,
//!   `reqwest`, `tower`, `futures_*`, `async_std`, `async_io`): a tokio program's connect() is
//!   reached through mio, tokio and often hyper/reqwest before any frame of the program itself.
//!   Other third-party code (a Go module, a Rust crate, a C library the program links) is the
//!   user's: they chose it and it is part of what they ship, so it is the best answer we have.
//! - Frames with neither a function nor a module: nothing to show.
//!
//! A frame with a module but no function (a stripped binary) is the user's unless the module is
//! one of the system libraries above: `/srv/app+0x1234` is still the best call site there is.
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// One frame of a captured user stack.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Frame {
    /// The instruction address in the process, as captured (return addresses are not adjusted).
    pub addr: u64,
    /// The function, demangled; for an inlined call, the inlined function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// The source file, the full path as written in the debug info.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The source line (of the call, for a return address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// The path of the binary or shared library the address lies in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// The file offset of `addr` in `module`, given when the function is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

impl Frame {
    /// A frame that could not be symbolized at all (the process was gone, say).
    pub fn bare(addr: u64) -> Self {
        Frame {
            addr,
            ..Frame::default()
        }
    }
}

/// Shared objects that are not the user's code, by the start of their file name. A file name
/// matches when it is `<prefix>.so…` or `<prefix>-…` (glibc before 2.34 shipped `libc-2.31.so`),
/// so `libcurl` does not match `libcurlpp`.
const SYSTEM_LIBRARIES: &[&str] = &[
    // glibc and its loader (`ld-linux-x86-64.so.2`, `ld-2.31.so`, musl's `ld-musl-x86_64.so.1`)
    "libc",
    "ld",
    "ld64",
    "libpthread",
    "libdl",
    "librt",
    "libm",
    "libresolv",
    "libanl",
    "libutil",
    // C++ and unwinding runtimes
    "libstdc++",
    "libc++",
    "libc++abi",
    "libgcc_s",
    "libunwind",
    // the network plumbing a C program's connection is made through
    "libcurl",
    "libcurl-gnutls",
    "libssl",
    "libcrypto",
    "libgnutls",
    "libnghttp2",
];

/// Rust crates that are the language's own or the async network plumbing (see the module doc).
const RUST_INTERNAL_CRATES: &[&str] = &[
    "std",
    "core",
    "alloc",
    "panic_unwind",
    "panic_abort",
    "std_detect",
    "compiler_builtins",
    "__gnu_cxx", // C++: libstdc++'s extensions, the same `::` path syntax
    "tokio",
    "mio",
    "socket2",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "tower",
    "futures_util",
    "futures_core",
    "futures_executor",
    "async_std",
    "async_io",
];

/// Symbols that the C toolchain or Go's cgo put into every binary.
const TOOLCHAIN_SYMBOLS: &[&str] = &[
    "_start",
    "_init",
    "_fini",
    "__libc_start_main",
    "__libc_start_call_main",
    "__libc_csu_init",
    "crosscall2",
];

/// Whether a frame is not the user's own code: runtime, standard library, the system's C
/// libraries, network plumbing, or a frame with nothing to show (see the module doc).
pub fn is_internal(f: &Frame) -> bool {
    if f.module.as_deref().is_some_and(is_system_library) || f.file.as_deref().is_some_and(is_toolchain_source) {
        return true;
    }
    match f.function.as_deref() {
        Some(name) => is_internal_function(name),
        None => f.module.is_none(),
    }
}

/// Rust's own library inlined into the program: DWARF names such frames without their path
/// (`call_mut<…>`, `each_addr<…>`), but their source is the toolchain's, remapped to
/// `/rustc/<commit>/library/…`.
fn is_toolchain_source(file: &str) -> bool {
    file.starts_with("/rustc/") || file.contains("/lib/rustlib/src/rust/library/")
}

fn is_system_library(module: &str) -> bool {
    let name = module.rsplit('/').next().unwrap_or(module);
    if name == "[vdso]" || name.starts_with("linux-vdso") || name.starts_with("libnss_") {
        return true;
    }
    SYSTEM_LIBRARIES.iter().any(|prefix| {
        name.strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with(".so") || rest.starts_with('-'))
    })
}

fn is_internal_function(name: &str) -> bool {
    if TOOLCHAIN_SYMBOLS.contains(&name)
        || name.starts_with("_cgo_")
        || name.starts_with("x_cgo_")
        || name.starts_with("__GI_")
    {
        return true;
    }
    if let Some(krate) = path_crate(name) {
        return RUST_INTERNAL_CRATES.contains(&krate);
    }
    match go_package(name) {
        Some(package) => is_go_std_package(package),
        None => false, // a C name: the module decided already
    }
}

/// The first element of a Rust or C++ path (`std` in `std::net::TcpStream::connect`), if the
/// name is such a path. For a trait impl `<Type as Trait>::method` it is the type's crate, or the
/// trait's when the type has none (`<&mut I as core::iter::Iterator>::next` is core's).
fn path_crate(name: &str) -> Option<&str> {
    if let Some(inner) = name.strip_prefix('<') {
        if let Some((ty, rest)) = inner.split_once(" as ") {
            return first_path_element(ty).or_else(|| first_path_element(rest));
        }
    }
    first_path_element(name)
}

fn first_path_element(name: &str) -> Option<&str> {
    let name = name.trim_start_matches(['<', '&', '*']);
    let name = name
        .strip_prefix("mut ")
        .or_else(|| name.strip_prefix("const "))
        .or_else(|| name.strip_prefix("dyn "))
        .unwrap_or(name);
    let (first, _) = name.split_once("::")?;
    // `ns::f(int)` or `std::vector<int>::push_back` keep their first element clean; anything
    // else before the `::` (a space, a paren, a generic `I`'s brackets) is not a path.
    (!first.is_empty() && first.chars().all(|c| c.is_alphanumeric() || c == '_')).then_some(first)
}

/// GCC's suffixes for cloned function bodies (`leaky_dial.constprop.0`, `main.cold`): a C name
/// with one of these is not a Go `package.Function`.
const GCC_CLONE_SUFFIXES: &[&str] = &[
    "constprop",
    "isra",
    "part",
    "cold",
    "lto_priv",
    "localalias",
    "clone",
    "llvm",
];

/// The package path of a Go function name (`net/http` in `net/http.(*Client).Do`,
/// `github.com/x/y` in `github.com/x/y.F[...]`, `main` in `main.main.func1`), or None when the
/// name is not shaped like a Go symbol.
fn go_package(name: &str) -> Option<&str> {
    // Generic instantiations carry type arguments with their own paths: `pkg.F[net/http.T]`.
    let name = name.split('[').next().unwrap_or(name);
    let last_element = name.rfind('/').map_or(0, |i| i + 1);
    let dot = last_element + name[last_element..].find('.')?;
    let package = &name[..dot];
    let rest = &name[dot + 1..];
    let suffix = rest.split('.').next().unwrap_or(rest);
    if package.is_empty()
        || rest.is_empty()
        || package.contains(char::is_whitespace)
        || GCC_CLONE_SUFFIXES.contains(&suffix)
    {
        return None;
    }
    Some(package)
}

/// Go's rule for the standard library: no dot in the first path element. `main` and the
/// compiler-generated `go.*`/`type..*` names follow from it (`main` is the user's, `type`/`go`
/// are internal).
fn is_go_std_package(package: &str) -> bool {
    if package == "main" {
        return false;
    }
    let first = package.split('/').next().unwrap_or(package);
    !first.contains('.')
}

/// The user's frames, innermost first: the stack without its internal frames (so a user
/// callback called by net/http's server is chained straight to the user code that serves it).
pub fn user_frames(frames: &[Frame]) -> impl Iterator<Item = &Frame> {
    frames.iter().filter(|f| !is_internal(f))
}

/// The innermost frame of the user's own code: where the user made the connection.
pub fn call_site(frames: &[Frame]) -> Option<&Frame> {
    user_frames(frames).next()
}

/// One frame for people: `main.DoRequest (client.go:23)` (file base name only),
/// `main.DoRequest`, `/path/bin+0x1234` for a stripped binary, or `0x7f… (unknown)`.
pub fn describe(f: &Frame) -> String {
    match (&f.function, &f.module, f.offset) {
        (Some(function), _, _) => match (&f.file, f.line) {
            (Some(file), line) => {
                let base = file.rsplit('/').next().unwrap_or(file);
                match line {
                    Some(line) => format!("{function} ({base}:{line})"),
                    None => format!("{function} ({base})"),
                }
            }
            (None, _) => function.clone(),
        },
        (None, Some(module), Some(offset)) => format!("{module}+{offset:#x}"),
        (None, Some(module), None) => format!("{:#x} ({module})", f.addr),
        (None, None, _) => format!("{:#x} (unknown)", f.addr),
    }
}

/// The first `n` user frames, innermost first, joined with ` <- `; empty when the stack holds no
/// user frame (the caller decides what to say then).
pub fn describe_chain(frames: &[Frame], n: usize) -> String {
    let mut out = String::new();
    for (i, f) in user_frames(frames).take(n).enumerate() {
        if i > 0 {
            out.push_str(" <- ");
        }
        let _ = write!(out, "{}", describe(f));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go(addr: u64, function: &str, file: &str, line: u32) -> Frame {
        Frame {
            addr,
            function: Some(function.into()),
            file: Some(file.into()),
            line: Some(line),
            module: Some("/srv/app".into()),
            offset: None,
        }
    }

    fn func(function: &str, module: &str) -> Frame {
        Frame {
            addr: 0x1000,
            function: Some(function.into()),
            module: Some(module.into()),
            ..Frame::default()
        }
    }

    fn internal(function: &str) -> bool {
        is_internal(&func(function, "/srv/app"))
    }

    #[test]
    fn go_standard_library_is_internal_by_its_first_path_element() {
        for name in [
            "runtime.goexit",
            "runtime.main",
            "net/http.(*Client).Do",
            "net/http.(*Transport).roundTrip",
            "net/http.(*http2Transport).RoundTrip",
            "net.(*Dialer).DialContext",
            "internal/poll.(*FD).Write",
            "syscall.Syscall",
            "crypto/tls.(*Conn).Handshake",
            "context.WithTimeout",
            "sync.(*Once).Do",
            "io.Copy",
            "bufio.(*Writer).Flush",
            "reflect.Value.Call",
            "os.(*File).Write",
            "time.Sleep",
            "encoding/json.Marshal",
            "vendor/golang.org/x/net/http2/hpack.(*Encoder).WriteField",
            "type..eq.[2]interface {}",
            "go.buildid",
            "slices.Sort[go.shape.int]",
        ] {
            assert!(internal(name), "{name} should be internal");
        }
    }

    #[test]
    fn go_main_and_modules_with_a_domain_are_user_code() {
        for name in [
            "main.main",
            "main.leakyPost",
            "main.main.func1",
            "main.(*client).post",
            "main.Map[go.shape.string_0]",
            "github.com/acme/api.(*Client).Fetch",
            "github.com/acme/api/v2.Fetch",
            "gopkg.in/yaml%2ev3.Unmarshal",
            "golang.org/x/net/http2.(*Transport).RoundTrip",
            "example.com/svc.F[net/http.Header]",
        ] {
            assert!(!internal(name), "{name} should be user code");
        }
    }

    #[test]
    fn c_frames_in_system_libraries_are_internal_and_the_program_is_not() {
        for module in [
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/lib/x86_64-linux-gnu/libc-2.31.so",
            "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            "/lib/ld-musl-x86_64.so.1",
            "/usr/lib/x86_64-linux-gnu/libpthread.so.0",
            "/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30",
            "/usr/lib/x86_64-linux-gnu/libgcc_s.so.1",
            "/usr/lib/x86_64-linux-gnu/libcurl.so.4.8.0",
            "/usr/lib/x86_64-linux-gnu/libcurl-gnutls.so.4",
            "/usr/lib/x86_64-linux-gnu/libssl.so.3",
            "/usr/lib/x86_64-linux-gnu/libcrypto.so.3",
            "/usr/lib/x86_64-linux-gnu/libnss_dns.so.2",
            "[vdso]",
        ] {
            assert!(is_internal(&func("connect", module)), "{module}");
        }
        for (name, module) in [
            ("leaky_dial", "/srv/leak"),
            ("main", "/srv/leak"),
            ("leaky_dial.constprop.0", "/srv/leak"),
            ("worker.cold", "/srv/leak"),
            ("fetch", "/usr/lib/libcurlpp.so.1"),
            ("lib_helper", "/opt/app/lib/libmine.so"),
            ("ldap_connect", "/usr/lib/x86_64-linux-gnu/libldap-2.5.so.0"),
        ] {
            assert!(!is_internal(&func(name, module)), "{name} in {module}");
        }
        assert!(is_internal(&func("_start", "/srv/leak")));
        assert!(is_internal(&func("__libc_start_main", "/srv/static")));
    }

    #[test]
    fn rust_std_and_network_plumbing_are_internal_other_crates_are_user_code() {
        for name in [
            "std::net::tcp::TcpStream::connect",
            "core::ops::function::FnOnce::call_once",
            "alloc::boxed::Box<T>::new",
            "<std::net::tcp::TcpStream as std::io::Write>::write",
            "<&mut I as core::iter::traits::iterator::Iterator>::next",
            "tokio::runtime::task::raw::poll",
            "mio::net::tcp::stream::TcpStream::connect",
            "hyper_util::client::legacy::connect::http::connect",
            "<reqwest::async_impl::client::Pending as core::future::future::Future>::poll",
            "std::rt::lang_start_internal",
            "__gnu_cxx::__verbose_terminate_handler",
        ] {
            assert!(internal(name), "{name} should be internal");
        }
        for name in [
            "myapp::client::fetch",
            "myapp::main::{{closure}}",
            "<myapp::Pool as myapp::Dial>::dial",
            "sqlx_core::pool::connect",
            "acme::net::Client::connect(char const*, int)",
        ] {
            assert!(!internal(name), "{name} should be user code");
        }
    }

    #[test]
    fn frames_without_function_and_module_are_internal_stripped_user_frames_are_not() {
        assert!(is_internal(&Frame::bare(0x7f00_dead_beef)));
        let stripped = Frame {
            addr: 0x401234,
            module: Some("/srv/app".into()),
            offset: Some(0x1234),
            ..Frame::default()
        };
        assert!(!is_internal(&stripped));
        let stripped_libc = Frame {
            module: Some("/usr/lib/x86_64-linux-gnu/libc.so.6".into()),
            ..stripped.clone()
        };
        assert!(is_internal(&stripped_libc));
    }

    #[test]
    fn describe_each_kind_of_frame() {
        assert_eq!(
            describe(&go(1, "main.DoRequest", "/home/u/src/app/client.go", 23)),
            "main.DoRequest (client.go:23)"
        );
        let no_line = Frame {
            line: None,
            ..go(1, "main.DoRequest", "client.go", 0)
        };
        assert_eq!(describe(&no_line), "main.DoRequest (client.go)");
        assert_eq!(describe(&func("main.DoRequest", "/srv/app")), "main.DoRequest");
        let stripped = Frame {
            addr: 0x401234,
            module: Some("/path/bin".into()),
            offset: Some(0x1234),
            ..Frame::default()
        };
        assert_eq!(describe(&stripped), "/path/bin+0x1234");
        let module_only = Frame {
            offset: None,
            ..stripped
        };
        assert_eq!(describe(&module_only), "0x401234 (/path/bin)");
        assert_eq!(describe(&Frame::bare(0x7f12_3456_789a)), "0x7f123456789a (unknown)");
    }

    /// The stack seen at `net/http.(*Transport).roundTrip` (Go 1.19, frame pointers).
    fn go_roundtrip_stack() -> Vec<Frame> {
        vec![
            go(
                0x6a1000,
                "net/http.(*Transport).roundTrip",
                "/usr/lib/go-1.19/src/net/http/transport.go",
                505,
            ),
            go(
                0x6a2000,
                "net/http.(*Transport).RoundTrip",
                "/usr/lib/go-1.19/src/net/http/roundtrip.go",
                17,
            ),
            go(
                0x6a3000,
                "net/http.send",
                "/usr/lib/go-1.19/src/net/http/client.go",
                252,
            ),
            go(
                0x6a4000,
                "net/http.(*Client).send",
                "/usr/lib/go-1.19/src/net/http/client.go",
                176,
            ),
            go(
                0x6a5000,
                "net/http.(*Client).do",
                "/usr/lib/go-1.19/src/net/http/client.go",
                725,
            ),
            go(
                0x6a6000,
                "net/http.(*Client).Post",
                "/usr/lib/go-1.19/src/net/http/client.go",
                846,
            ),
            go(0x6b0000, "main.leakyPost", "/src/leak/main.go", 23),
            go(
                0x6b1000,
                "github.com/acme/jobs.(*Runner).Run",
                "/go/pkg/mod/github.com/acme/jobs/run.go",
                40,
            ),
            go(0x6b2000, "main.main", "/src/leak/main.go", 40),
            go(0x6c0000, "runtime.main", "/usr/lib/go-1.19/src/runtime/proc.go", 250),
            go(
                0x6c1000,
                "runtime.goexit",
                "/usr/lib/go-1.19/src/runtime/asm_amd64.s",
                1594,
            ),
        ]
    }

    #[test]
    fn go_call_site_skips_net_http_and_the_chain_skips_the_runtime() {
        let stack = go_roundtrip_stack();
        assert_eq!(call_site(&stack).unwrap().function.as_deref(), Some("main.leakyPost"));
        assert_eq!(
            describe_chain(&stack, 2),
            "main.leakyPost (main.go:23) <- github.com/acme/jobs.(*Runner).Run (run.go:40)"
        );
        assert_eq!(
            describe_chain(&stack, 10),
            "main.leakyPost (main.go:23) <- github.com/acme/jobs.(*Runner).Run (run.go:40) \
             <- main.main (main.go:40)"
        );
        assert_eq!(user_frames(&stack).count(), 3);
    }

    #[test]
    fn c_call_site_skips_libc_and_libcurl() {
        let libc = "/usr/lib/x86_64-linux-gnu/libc.so.6";
        let curl = "/usr/lib/x86_64-linux-gnu/libcurl.so.4";
        let stack = vec![
            func("__connect", libc),
            func("Curl_connecthost", curl),
            func("curl_easy_perform", curl),
            Frame {
                file: Some("/src/leak.c".into()),
                line: Some(12),
                ..func("leaky_dial", "/srv/leak")
            },
            func("main", "/srv/leak"),
            func("__libc_start_call_main", libc),
            func("__libc_start_main_impl", libc),
            func("_start", "/srv/leak"),
        ];
        assert_eq!(describe(call_site(&stack).unwrap()), "leaky_dial (leak.c:12)");
        assert_eq!(describe_chain(&stack, 3), "leaky_dial (leak.c:12) <- main");
    }

    #[test]
    fn rust_call_site_skips_std_tokio_and_mio() {
        let stack = vec![
            func("connect", "/usr/lib/x86_64-linux-gnu/libc.so.6"),
            func("mio::net::tcp::stream::TcpStream::connect", "/srv/app"),
            func(
                "tokio::net::tcp::stream::TcpStream::connect_mio::{{closure}}",
                "/srv/app",
            ),
            func("myapp::db::dial::{{closure}}", "/srv/app"),
            func("myapp::main::{{closure}}", "/srv/app"),
            func("tokio::runtime::park::CachedParkThread::block_on", "/srv/app"),
            func("std::rt::lang_start_internal", "/srv/app"),
        ];
        assert_eq!(
            describe_chain(&stack, 5),
            "myapp::db::dial::{{closure}} <- myapp::main::{{closure}}"
        );
    }

    #[test]
    fn stripped_binary_call_site_is_module_and_offset() {
        let stack = vec![
            func("connect", "/usr/lib/x86_64-linux-gnu/libc.so.6"),
            Frame {
                addr: 0x5555_5555_5189,
                module: Some("/srv/leak".into()),
                offset: Some(0x1189),
                ..Frame::default()
            },
            Frame::bare(0x7fff_0000_1000),
        ];
        assert_eq!(describe_chain(&stack, 3), "/srv/leak+0x1189");
    }

    #[test]
    fn empty_and_all_internal_stacks_have_no_call_site() {
        assert_eq!(call_site(&[]), None);
        assert_eq!(describe_chain(&[], 3), "");
        let stack = vec![
            func("runtime.goexit", "/srv/app"),
            Frame::bare(0x10),
            func("connect", "/usr/lib/x86_64-linux-gnu/libc.so.6"),
        ];
        assert_eq!(call_site(&stack), None);
        assert_eq!(describe_chain(&stack, 3), "");
        assert_eq!(describe_chain(&go_roundtrip_stack(), 0), "");
    }

    #[test]
    fn serialized_frames_leave_out_what_is_unknown() {
        assert_eq!(serde_json::to_string(&Frame::bare(16)).unwrap(), r#"{"addr":16}"#);
        let f = go(1, "main.F", "/src/main.go", 3);
        let back: Frame = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(back, f);
    }

    #[test]
    fn rust_library_code_inlined_into_the_program_is_internal_by_its_source() {
        let inlined = Frame {
            addr: 0x1000,
            function: Some("call_mut<fn(&SocketAddr) -> Result<TcpStream, Error>, (&SocketAddr)>".into()),
            file: Some("/rustc/59807616e/library/core/src/ops/function.rs".into()),
            line: Some(166),
            module: Some("/usr/bin/app".into()),
            offset: None,
        };
        assert!(is_internal(&inlined));
        let own = Frame {
            function: Some("app::dial".into()),
            file: Some("/src/app/src/main.rs".into()),
            ..inlined.clone()
        };
        assert!(!is_internal(&own));
        assert_eq!(call_site(&[inlined, own.clone()]), Some(&own));
    }
}
