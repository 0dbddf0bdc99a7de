//! The FlexCloud API client: one HTTP client, one function per endpoint, typed models.

mod client;
mod error;
pub mod model;

pub use client::{ApiClient, ClientSettings};
pub use error::{ApiError, InvalidReason};

/// The endpoints the exporter calls, as the `endpoint` label names them.
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
