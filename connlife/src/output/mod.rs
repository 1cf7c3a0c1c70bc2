//! Pure formatting of the session's outputs: human text and JSON lines ([`text`]), and
//! OpenMetrics for the agent ([`metrics`]).
pub mod metrics;
pub mod text;

pub use text::*;
