//! I/O that drives the pure core: the one [`driver`] and its modes ([`watch`]: `connlife
//! --pid`; [`agent`]: `connlife agent`; `connlife report` replays a [`record`] through the
//! driver's session), the agent's HTTP [`endpoint`].
pub mod agent;
pub mod driver;
pub mod endpoint;
pub mod record;
pub mod terminal;
pub mod watch;
