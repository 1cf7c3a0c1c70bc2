//! connlife: an eBPF tracer of TCP socket lifecycles that finds connections a process is stuck
//! with (CLOSE_WAIT never closed, ESTABLISHED never reused) and explains its fd exhaustion.
//! Pure logic (event decoding, the connection model, detectors, formatting) lives apart from
//! I/O (loader, ring buffer, netlink, /proc, output sinks).
pub mod agent;
pub mod btf;
pub mod cli;
pub mod detect;
pub mod event;
pub mod live;
pub mod loader;
pub mod metrics;
pub mod model;
pub mod output;
pub mod probes;
pub mod session;
pub mod snapshot;
pub mod tracefs;
