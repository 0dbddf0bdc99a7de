//! flexcloud-exporter: a Prometheus exporter for the Hostway FlexCloud image API.
//!
//! # Layout
//! - [`config`]: `FLEXCLOUD_*` settings, defaults and validation.
//! - [`api`]: the FlexCloud client (HTTP, paging, retries, typed models, errors).
//! - [`snapshot`]: our typed view of one cycle and the stale-data rule.
//! - [`collector`]: the cycle: discovery, probes, concurrency, schedule, shutdown.
//! - [`metrics`]: every metric name and help text; snapshot -> exposition bytes.
//! - [`server`]: the HTTP endpoints `/metrics`, `/`, `/-/healthy`, `/-/ready`.
//! - [`landing`]: the HTML landing page.
//! - [`webconfig`]: the exporter-toolkit web config file: TLS and Basic auth for the endpoint.
//! - [`telemetry`]: the tracing subscriber.
//! - [`simulator`]: the fake FlexCloud API used by tests, the demo and fault drills.
//! - [`timestamp`]: the API's zone-less timestamps.
//! - [`app`]: wiring for `main`: run the exporter, the demo, one cycle, a health check.

pub mod api;
pub mod app;
pub mod collector;
pub mod config;
pub mod landing;
pub mod metrics;
pub mod server;
pub mod simulator;
pub mod snapshot;
pub mod telemetry;
pub mod timestamp;
pub mod webconfig;
