//! The benchmark's floors, in an object of their own so that they never ship in the product's.
//! `connlife floor` loads them for `cargo xtask bench`:
//!
//! - [`floor_count`]: one program that only counts `sock/inet_sock_set_state`, the least any
//!   tracer of that tracepoint pays.
//! - `--hooks`: connlife's own hooks, each with a program that does nothing (the state one
//!   counts), attached the way connlife attaches them (raw or classic, the state tracepoint
//!   twice): what any tracer with connlife's hooks pays before its programs do any work.
#![no_std]
#![no_main]

use aya_ebpf::{
    macros::{map, raw_tracepoint, tracepoint},
    maps::PerCpuArray,
    programs::{RawTracePointContext, TracePointContext},
};

#[map]
static FLOOR: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn count_state() {
    if let Some(slot) = FLOOR.get_ptr_mut(0) {
        // SAFETY: a per-CPU slot, written only by one of these programs on this CPU at a time.
        unsafe { *slot += 1 };
    }
}

#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn floor_count(_ctx: TracePointContext) -> u32 {
    count_state();
    0
}

/// The state tracepoint of the hook floor (connlife's main state program's hook).
#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn floor_hooks_state(_ctx: RawTracePointContext) -> i32 {
    count_state();
    0
}

/// Every other raw tracepoint connlife attaches to (the nested state program's, fork,
/// send and receive lengths).
#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn floor_hooks_raw(_ctx: RawTracePointContext) -> i32 {
    0
}

/// Every classic tracepoint connlife attaches to (the syscalls, process exit and exec).
#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn floor_hooks_classic(_ctx: TracePointContext) -> u32 {
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
