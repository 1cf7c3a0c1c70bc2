//! The kernel side seen from userspace: which hooks and struct offsets this kernel has
//! ([`probes`], [`tracefs`], [`btf`]), loading and attaching the programs and reading their maps
//! ([`loader`]), decoding ring-buffer records ([`event`]) and unfolding what the kernel kept in a
//! socket's entry instead of sending ([`unfold`]), and the kernel's own view of sockets
//! and fds for snapshots and reconciliation ([`snapshot`]); where connections were opened: the
//! Go uprobes ([`go_probes`], with Go's own function table [`gopclntab`]) and the symbolizer
//! ([`symbolize`]).
pub mod btf;
pub mod event;
pub mod go_probes;
pub mod gopclntab;
pub mod loader;
pub mod probes;
pub mod snapshot;
pub mod symbolize;
pub mod tracefs;
pub mod unfold;
