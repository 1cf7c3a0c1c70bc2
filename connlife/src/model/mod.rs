//! The pure core: the connection model ([`conns`]), the detectors over it ([`detect`]) and the
//! session that turns inputs into outputs ([`session`]). No I/O, no clock.
pub mod conns;
pub mod detect;
pub mod session;

pub use conns::*;
