//! connlife's kernel side: programs that follow every TCP socket of the traced processes and
//! stream its lifecycle to userspace through one ring buffer. One file per hook family:
//!
//! - [`state`]: `sock/inet_sock_set_state` (raw tracepoint): every TCP state change, often in
//!   softirq where the running task is not the owner; the owner comes from SOCKS.
//! - [`fds`]: the syscalls that give a socket to a process or take it away (connect, accept,
//!   close, dup2/dup3) and the fd allocations that fail with EMFILE/ENFILE.
//! - [`usage`]: `sock/sock_{send,recv}_length` (6.3+): bytes, last activity and exchanges,
//!   counted in SOCKS rather than one event per send.
//! - [`process`]: `sched/sched_process_fork` (raw tracepoint: a child inherits its parent's
//!   sockets) and `sched/sched_process_exit` (the post-mortem).
//! - [`go`]: uprobes on Go's net/http and net that carry a request's origin (the caller's
//!   stack, the Transport) from the request goroutine to the dial goroutine's connect().
//! - [`stack`]: a connection's user stack (its origin), walked by its frame pointers.
//! - [`helpers`]: what they share: the filter, kernel reads, the fd-table walk, emitting.
//!
//! Every field offset comes from [`Config`], filled by userspace from tracefs and BTF. The
//! benchmark's floor program lives in its own object (`src/bin/floor.rs`), not in this one.
#![no_std]
#![no_main]
// BPF's atomic add (`lock xadd`): the bpfel target's atomic types have no fetch_add.
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod fds;
mod go;
mod helpers;
mod process;
mod stack;
mod state;
mod usage;

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use connlife_common::*;

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);
#[map]
static SOCKS: HashMap<u64, SockInfo> = HashMap::with_max_entries(MAX_SOCKS, 0);
#[map]
static WANTED_TGIDS: HashMap<u32, u8> = HashMap::with_max_entries(MAX_WANTED, 0);
#[map]
static MAYBE_WANTED: Array<u8> = Array::with_max_entries(MAYBE_WANTED_SLOTS, 0);
#[map]
static MAYBE_SOCKS: Array<u32> = Array::with_max_entries(MAYBE_SOCKS_SLOTS, 0);
#[map]
static SEEDS_PENDING: Array<i64> = Array::with_max_entries(1, 0);
#[map]
static WANTED_COMMS: HashMap<[u8; 16], u8> = HashMap::with_max_entries(MAX_WANTED, 0);
#[map]
static LISTEN_PORTS: Array<u8> = Array::with_max_entries(LISTEN_PORT_SLOTS, 0);
#[map]
static PRESEED: LruHashMap<u64, Seed> = LruHashMap::with_max_entries(MAX_PRESEED, 0);
#[map]
static CONNECT_FDS: LruHashMap<u32, ConnectCall> = LruHashMap::with_max_entries(MAX_CONNECT_FDS, 0);
#[map]
static STACKS: HashMap<u32, UserStack> = HashMap::with_max_entries(MAX_STACKS, 0);
#[map]
static GO_REQUESTS: LruHashMap<u64, GoRequest> = LruHashMap::with_max_entries(MAX_GO_TRACKED, 0);
#[map]
static GO_WANTS: LruHashMap<u64, GoRequest> = LruHashMap::with_max_entries(MAX_GO_TRACKED, 0);
#[map]
static GO_DIALS: LruHashMap<u64, GoRequest> = LruHashMap::with_max_entries(MAX_GO_TRACKED, 0);
#[map]
static GO_PENDING: LruHashMap<u32, GoPendingConnect> = LruHashMap::with_max_entries(MAX_GO_TRACKED, 0);
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

/// Filled in by userspace at load time (read-only data, so the verifier sees constants).
#[unsafe(no_mangle)]
static CONFIG: Config = Config::ZEROED;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
