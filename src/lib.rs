//! flexcloud-exporter: a Prometheus exporter for the Hostway FlexCloud image API.
//!
//! # Layout
//! - [`simulator`]: the fake FlexCloud API used by tests, the demo and fault drills.
//! - [`timestamp`]: the API's zone-less timestamps.

pub mod simulator;
pub mod timestamp;
