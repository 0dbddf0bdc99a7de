//! The FlexCloud client: one HTTP client, one function per endpoint, typed models, the
//! credential gate, and the observer through which each request is reported.

mod client;
mod error;
mod gate;
pub mod model;
mod pace;

use std::borrow::Cow;
use std::time::Duration;

pub use client::{ApiClient, ClientSettings, PasswordReload, is_path_segment};
pub use error::{ApiError, ErrorKind, InvalidReason};
pub use gate::{CredentialGate, CredentialState};

/// The endpoints the exporter calls. Each step of a cycle calls one of them, so this is
/// also the step: the `endpoint` label of request metrics and the `step` label of
/// discovery metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    Accounts,
    Zones,
    ImagesDetail,
}

impl Endpoint {
    pub const fn as_str(self) -> &'static str {
        match self {
            Endpoint::Accounts => "accounts",
            Endpoint::Zones => "zones",
            Endpoint::ImagesDetail => "images_detail",
        }
    }
}

/// The `type` filter of the image-detail endpoint; images carry no type themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ImageType {
    Base,
    Server,
}

impl ImageType {
    pub const ALL: [ImageType; 2] = [ImageType::Base, ImageType::Server];

    pub const fn as_str(self) -> &'static str {
        match self {
            ImageType::Base => "BASE",
            ImageType::Server => "SERVER",
        }
    }
}

/// How one request ended, as the `code` label of the request counter names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Code {
    /// An HTTP answer with this status.
    Status(u16),
    Timeout,
    ConnectError,
    /// A 200 whose body could not be used, or a redirect without a usable target.
    InvalidResponse,
}

impl Code {
    pub fn label(self) -> Cow<'static, str> {
        match self {
            Code::Status(200) => "200".into(),
            Code::Status(303) => "303".into(),
            Code::Status(status) => status.to_string().into(),
            Code::Timeout => "timeout".into(),
            Code::ConnectError => "connect_error".into(),
            Code::InvalidResponse => "invalid_response".into(),
        }
    }
}

/// Told about every request the client sends, once it has ended; the metrics implement it.
/// `account` is `None` for requests that concern no single account (`GET /accounts`).
pub trait RequestObserver: Send + Sync + std::fmt::Debug {
    fn request_ended(&self, account: Option<&str>, endpoint: Endpoint, code: Code, took: Duration);
}
