//! connlife: an eBPF tracer of TCP socket lifecycles that finds connections a process is stuck
//! with (CLOSE_WAIT never closed, ESTABLISHED never reused) and explains its fd exhaustion.
//!
//! The folders show the architecture, from the kernel outwards:
//! - [`kernel`]: discovery of hooks and offsets, loading the programs, decoding their records,
//!   and the kernel's own truth (sock_diag + /proc snapshots). I/O.
//! - [`model`]: the pure core: connection state machine, detectors, the session. No I/O.
//! - [`output`]: pure formatting of the session's outputs (text, JSON, OpenMetrics).
//! - [`run`]: the one driver that joins them, and the modes (`--pid`, `agent`, `report`).
/// A line on stderr that never panics: a closed stderr (a pipe whose reader went away) must not
/// take connlife down the way `eprintln!` would.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Freed memory handed back to the system. glibc keeps freed heap for reuse: a kernel view
/// applied (sock_diag results, /proc fd maps, the sockets as the model wants them: at 200,000
/// sockets more than the model itself), or the binaries an idle symbolizer let go of, would
/// otherwise stay in the RSS.
pub fn give_back_freed_memory() {
    // SAFETY: malloc_trim only releases free memory of the allocator; it takes no pointers.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
}

pub mod cli;
pub mod kernel;
pub mod model;
pub mod output;
pub mod run;
