//! The benchmark's floor, in an object of its own so that it never ships in the product's:
//! one program that only counts `sock/inet_sock_set_state`, the least any tracer of that
//! tracepoint pays. `connlife floor` loads it for `cargo xtask bench`.
#![no_std]
#![no_main]

use aya_ebpf::{macros::map, macros::tracepoint, maps::PerCpuArray, programs::TracePointContext};

#[map]
static FLOOR: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn floor_count(_ctx: TracePointContext) -> u32 {
    if let Some(slot) = FLOOR.get_ptr_mut(0) {
        // SAFETY: a per-CPU slot, written only by this program on this CPU.
        unsafe { *slot += 1 };
    }
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
