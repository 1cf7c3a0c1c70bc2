//! I/O that drives the pure core: the live run and the report ([`live`]), the agent ([`agent`]).
pub mod agent;
pub mod live;
pub mod record;
