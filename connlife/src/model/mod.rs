//! The pure core: the connection model ([`conns`]), the detectors over it ([`detect`]) and the
//! session that turns inputs into outputs ([`session`]), the post-mortem's judgment
//! ([`verdict`]). No I/O, no clock.
pub mod conns;
pub mod detect;
pub mod origin;
pub mod session;
pub mod verdict;

pub use conns::*;
