//! Heap bytes per tracked connection of the pure connection model, measured with a counting
//! global allocator and no kernel (issue 14's memory goal, step by step in seconds instead of a
//! bench run). `#[ignore]`d: run it with
//! `cargo test --release -p connlife --test model_memory -- --ignored --nocapture`.
use std::{
    alloc::{GlobalAlloc, Layout, System},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    sync::atomic::{AtomicUsize, Ordering::Relaxed},
};

use connlife::{
    kernel::event::{KernelEvent, Kind, Role, TcpState, Use},
    model::conns::{Model, Owner, SeenSocket},
};

/// The system allocator, counting the bytes it has handed out and not taken back.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// The most `LIVE` has been since it was last reset.
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
        PEAK.fetch_max(live, Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let live = LIVE.fetch_add(new_size, Relaxed) + new_size;
        PEAK.fetch_max(live, Relaxed);
        LIVE.fetch_sub(layout.size(), Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const CONNS: u32 = 200_000;
/// Connections per process (the bench's holders hold up to 19,000 each).
const PER_PROCESS: u32 = 19_000;

fn addr(host: u32, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(0x7f00_0000 | host), port))
}

/// Connection `i`'s two ends: distinct ports on distinct loopback hosts.
fn tuple(i: u32) -> (SocketAddr, SocketAddr) {
    (
        addr(1 + i / 20_000, 32768 + (i % 20_000) as u16),
        addr(0xffff, 9000 + (i / 19_000) as u16),
    )
}

fn event(kind: Kind, i: u32, ts_ns: u64) -> KernelEvent {
    let (local, remote) = tuple(i);
    KernelEvent {
        kind,
        ts_ns,
        sk: 0xffff_8880_0000_0000 + u64::from(i) * 0x800,
        tgid: Some(1000 + i / PER_PROCESS),
        fd: Some(3 + (i % PER_PROCESS) as i32),
        comm: "connlife-worklo".into(),
        netns: 4026531840,
        role: if i.is_multiple_of(2) {
            Role::Client
        } else {
            Role::Server
        },
        old_state: None,
        new_state: None,
        local: Some(local),
        remote: Some(remote),
        sock_use: Use::default(),
        ret: 0,
        syscall: None,
        child: None,
        origin: None,
        folded: None,
    }
}

fn state(i: u32, from: TcpState, to: TcpState, ts_ns: u64) -> KernelEvent {
    KernelEvent {
        old_state: Some(from),
        new_state: Some(to),
        ..event(Kind::State, i, ts_ns)
    }
}

/// Bytes per connection the model holds once built, and the peak per connection while
/// building it (inputs included).
fn measure(build: impl FnOnce() -> Model) -> (f64, f64) {
    let before = LIVE.load(Relaxed);
    PEAK.store(before, Relaxed);
    let model = build();
    let after = LIVE.load(Relaxed);
    assert_eq!(model.len(), CONNS as usize);
    let per = |bytes: usize| (bytes - before) as f64 / f64::from(CONNS);
    let (steady, peak) = (per(after), per(PEAK.load(Relaxed)));
    drop(model);
    (steady, peak)
}

/// Born under connlife's eyes: clients by connect (SYN_SENT, ESTABLISHED), servers by their
/// handshake and accept().
fn event_born() -> Model {
    let mut m = Model::new(0, true);
    for i in 0..CONNS {
        let ts = 1_000_000_000 + u64::from(i) * 1000;
        if i.is_multiple_of(2) {
            m.apply(&state(i, TcpState::Close, TcpState::SynSent, ts));
            m.apply(&state(i, TcpState::SynSent, TcpState::Established, ts + 100));
        } else {
            m.apply(&state(i, TcpState::Listen, TcpState::SynRecv, ts));
            m.apply(&state(i, TcpState::SynRecv, TcpState::Established, ts + 100));
            m.apply(&event(Kind::Accept, i, ts + 200));
        }
    }
    m
}

/// Found by the start-up snapshot, each with one holder.
fn snapshot_found() -> Model {
    let mut m = Model::new(0, true);
    let sockets: Vec<SeenSocket> = (0..CONNS)
        .map(|i| {
            let (local, remote) = tuple(i);
            SeenSocket {
                netns: 4026531840,
                local,
                remote,
                state: TcpState::Established,
                role: if i.is_multiple_of(2) {
                    Role::Client
                } else {
                    Role::Server
                },
                owners: smallvec::smallvec![Owner {
                    tgid: 1000 + i / PER_PROCESS,
                    comm: "connlife-worklo".into(),
                    fd: Some(3 + (i % PER_PROCESS) as i32).into(),
                }],
                usage: Use::default(),
            }
        })
        .collect();
    m.apply_snapshot(&sockets, 1_000_000_000, 2_000_000_000);
    m
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn bytes_per_connection() {
    let (events, events_peak) = measure(event_born);
    let (snapshot, snapshot_peak) = measure(snapshot_found);
    println!(
        "size_of Conn {} B, Owner {} B",
        std::mem::size_of::<connlife::model::conns::Conn>(),
        std::mem::size_of::<Owner>()
    );
    println!(
        "model heap per connection ({CONNS} connections): event-born {events:.0} B (peak {events_peak:.0} B), \
         snapshot-found {snapshot:.0} B (peak {snapshot_peak:.0} B, the SeenSockets included)"
    );
}
