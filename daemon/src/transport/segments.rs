//! Messages larger than one packet over a link: the segment protocol lives in the pure
//! `mehr-transport` crate (`mehr_transport::segments`), where it is fuzzed without the
//! daemon's storage; the transport actor uses it through these names.

pub use mehr_transport::segments::*;
