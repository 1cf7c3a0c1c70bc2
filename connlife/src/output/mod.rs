//! Pure formatting of the session's outputs: human text and JSON lines ([`text`]), the live
//! terminal view ([`tui`]), and OpenMetrics for the agent ([`metrics`]).
pub mod html;
pub mod metrics;
pub mod text;
pub mod tui;

pub use text::*;
