//! The exporter-toolkit web config for the endpoint: the file's schema, TLS and Basic auth.

mod auth;
mod config;
mod tls;

pub use auth::BasicAuth;
pub use config::{WebConfig, WebConfigError};
