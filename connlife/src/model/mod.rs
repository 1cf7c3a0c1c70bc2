//! The pure core: the connection model ([`conns`]), the detectors over it ([`detect`]) and the
//! session that turns inputs into outputs ([`session`]), the post-mortem's judgment
//! ([`verdict`]), and where connections were opened: the frame rules ([`origin`]) and the
//! resolution of a birth into the origin findings show ([`origins`]). No I/O, no clock.
pub mod conns;
pub mod detect;
pub mod origin;
pub mod origins;
pub mod session;
pub mod verdict;

pub use conns::*;
