//! I/O that drives the pure core: the one [`driver`] (its reads of /proc and sock_diag in
//! [`procs`], its outputs in [`sink`]) and its modes ([`watch`]: `connlife --pid`; [`agent`]:
//! `connlife agent`; [`report`]: `connlife report` replays a [`record`] through the same
//! session), the agent's HTTP [`endpoint`], the live view's [`terminal`].
pub mod agent;
pub mod driver;
pub mod endpoint;
pub mod procs;
pub mod record;
pub mod report;
pub mod sink;
pub mod terminal;
pub mod watch;
